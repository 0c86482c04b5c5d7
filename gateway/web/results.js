// A job's results: which filter each item falls under, and the CSV download, byte for byte
// what `catdog jobs results JOB_ID` writes (client/output.py; tests/browser checks this).

export const COLUMNS = [
  "filename", "label", "probability", "p_cat", "p_dog", "pet_detected", "model_version", "error",
];

// Below this, an answer is worth a person's second look.
export const LOW_CONFIDENCE = 0.8;

export const FILTERS = {
  all: () => true,
  cat: (item) => item.status === "succeeded" && item.label === "cat",
  dog: (item) => item.status === "succeeded" && item.label === "dog",
  failed: (item) => item.status === "failed",
  low: (item) => item.status === "succeeded" && item.probability < LOW_CONFIDENCE,
};

// Python's str(float): the shortest round-trip digits, as JavaScript's, but always with a
// decimal point ("1.0") and with a two-digit exponent below 1e-4 ("3e-05").
function pythonFloat(x) {
  if (Number.isInteger(x) && Math.abs(x) < 1e16) return x.toFixed(1);
  const magnitude = Math.abs(x);
  if (magnitude !== 0 && (magnitude < 1e-4 || magnitude >= 1e16)) {
    return x.toExponential().replace(/e([+-])(\d)$/, "e$10$2");
  }
  return String(x);
}

function cell(value) {
  if (value === null || value === undefined) return "";
  const text =
    typeof value === "number" ? pythonFloat(value)
    : typeof value === "boolean" ? (value ? "True" : "False") // Python's str(bool)
    : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** One row, as client/output.py's `row()` makes it from a job item. */
function row(item) {
  const p = item.probabilities || {};
  const error = item.error ? `${item.error.reason}: ${item.error.message}` : null;
  return [
    item.filename, item.label, item.probability, p.cat, p.dog, item.pet_detected,
    item.model?.version, error,
  ];
}

export function toCsv(items) {
  const lines = [COLUMNS.join(","), ...items.map((item) => row(item).map(cell).join(","))];
  return `${lines.join("\n")}\n`;
}
