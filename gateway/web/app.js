// The page: one photo -> POST /predict; several -> POST /jobs, followed with paged
// GET /jobs/{id} (its id in the address, so a reload comes back to it); corrections -> POST
// /feedback. Everything it shows comes from the API's answers.

import { ApiError, apiKey, call, setApiKey, whenKeyNeeded } from "./api.js";
import { KEY_NEEDED, KEY_REJECTED, bytes, percent, seconds, sentence } from "./messages.js";
import { filesOfDrop, photosOfFolder, prepare } from "./photos.js";
import { FILTERS, LOW_CONFIDENCE, toCsv } from "./results.js";

const NOT_A_PET = "not a cat or dog?";

const $ = (id) => document.getElementById(id);
const OTHER = { cat: "dog", dog: "cat" };
const PAGE_SIZE = 200;
const POLL_MS = 1000;
const PREPARE_AT_ONCE = 4;
const JOB_ID = /^[A-Za-z0-9_-]{1,64}$/;
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// --- what the page says -----------------------------------------------------------------

function say(text) {
  $("notice").textContent = text || "";
}

// For call(): a retry in words, then that it went through.
function sayRetry(text) {
  say(text ?? "Connected to the service again.");
}

function errorText(error) {
  if (!(error instanceof ApiError)) return `Something went wrong in this page: ${error.message}`;
  const later = error.retryAfterS ? ` Try again in ${seconds(error.retryAfterS)}.` : "";
  return error.message + later;
}

function problem(error) {
  if (error && !(error instanceof ApiError)) console.error(error);
  $("problem").hidden = !error;
  $("problem-text").textContent = error ? errorText(error) : "";
  $("problem-detail").textContent = error?.detail ? `Details: ${error.detail}` : "";
}

// --- the API key (kept in sessionStorage: this tab only) --------------------------------

let keyAsked = null;

whenKeyNeeded((rejected) => {
  $("key-message").textContent = rejected ? KEY_REJECTED : KEY_NEEDED;
  $("key-form").hidden = false;
  $("key-input").focus();
  keyAsked ??= new Promise((resolve) => {
    $("key-form").onsubmit = (event) => {
      event.preventDefault();
      const key = $("key-input").value.trim();
      if (!key) return;
      setApiKey(key);
      $("key-input").value = "";
      $("key-form").hidden = true;
      $("forget-key").hidden = false;
      keyAsked = null;
      resolve();
    };
  });
  return keyAsked;
});

$("forget-key").hidden = !apiKey();
$("forget-key").addEventListener("click", () => {
  setApiKey("");
  $("forget-key").hidden = true;
  say("The API key was forgotten.");
});

// --- one photo --------------------------------------------------------------------------

function showSection(name) {
  $("single").hidden = name !== "single";
  $("job").hidden = name !== "job";
}

function sentText(prepared) {
  if (!prepared.resized) return `${bytes(prepared.sentBytes)}, as it was`;
  const size = `${prepared.width} × ${prepared.height} px`;
  return `${bytes(prepared.sentBytes)}, shrunk to ${size} from ${bytes(prepared.originalBytes)}`;
}

function renderBars(probabilities) {
  const bars = $("single-bars");
  bars.replaceChildren();
  for (const [name, p] of Object.entries(probabilities).sort()) {
    const item = el("li", `bar-row ${name}`);
    const track = el("span", "bar");
    const fill = el("span", "fill");
    fill.style.width = `${(p * 100).toFixed(1)}%`;
    track.append(fill);
    item.append(el("span", "bar-name", name), track, el("span", "bar-value", percent(p)));
    bars.append(item);
  }
}

function renderAnswer(answer, prepared) {
  $("single-label").textContent = answer.label;
  $("single-label").className = `label ${answer.label}`;
  $("single-confidence").textContent = percent(answer.probability);
  $("single-not-pet").hidden = answer.pet_detected !== false;
  renderBars(answer.probabilities);
  $("single-model").textContent = `${answer.model.name} version ${answer.model.version}`;
  $("single-sent").textContent = sentText(prepared);
  $("single-latency").textContent = `${Math.round(answer.latency_ms)} ms`;
  const wrong = $("single-wrong");
  const other = OTHER[answer.label];
  wrong.hidden = !other;
  wrong.disabled = false;
  wrong.textContent = `This is wrong: it is a ${other}`;
  wrong.onclick = () =>
    correct({ prediction_id: answer.prediction_id, label: other }, wrong, $("single-feedback"));
  $("single-feedback").textContent = "";
  $("single-result").hidden = false;
  $("single").scrollIntoView({ block: "nearest" }); // on a phone the answer is below the fold
}

async function classifyOne(file) {
  leaveJob();
  if (location.search) history.pushState(null, "", "/"); // a reload must not bring a job back
  showSection("single");
  $("single-result").hidden = true;
  $("single-file").textContent = file.name;
  say(`Classifying ${file.name}…`);
  const prepared = await prepare(file);
  const photo = $("single-photo");
  if (photo.src) URL.revokeObjectURL(photo.src);
  photo.removeAttribute("src");
  photo.hidden = !prepared.thumbUrl; // null: the browser could not decode it either
  if (prepared.thumbUrl) photo.src = URL.createObjectURL(prepared.upload);
  photo.alt = `The photo ${file.name}`;
  const body = new FormData();
  body.append("file", prepared.upload, file.name);
  try {
    renderAnswer(await call("/predict", { method: "POST", body, say: sayRetry }), prepared);
    say("");
  } catch (error) {
    say("");
    problem(error);
  }
  if (prepared.thumbUrl) URL.revokeObjectURL(prepared.thumbUrl);
}

// --- corrections ------------------------------------------------------------------------

function countedText(outcome) {
  if (!outcome.counted) return "This correction had already been counted.";
  const accuracy =
    outcome.window_accuracy === null
      ? ""
      : ` Version ${outcome.model.version} is now right on ${percent(outcome.window_accuracy)}` +
        ` of the ${outcome.window_size} answers people have checked.`;
  return `Thank you: your correction (${outcome.label}) was counted.${accuracy}`;
}

// `brief`: a tile has room for a few words only.
async function correct(target, button, status, brief = false) {
  button.disabled = true;
  status.textContent = "Sending the correction…";
  try {
    const outcome = await call("/feedback", {
      method: "POST",
      body: JSON.stringify(target),
      headers: { "Content-Type": "application/json" },
      say: sayRetry,
    });
    const counted = outcome.counted ? "Correction counted." : "Already counted.";
    status.textContent = brief ? counted : countedText(outcome);
  } catch (error) {
    status.textContent = errorText(error);
    button.disabled = error instanceof ApiError && error.status === 409;
  }
}

// --- batch jobs -------------------------------------------------------------------------

let job = null; // the job on screen: {id, items, tiles, thumbs, summary, timer}

function randomKey() {
  // crypto.randomUUID() needs HTTPS; a deployment on plain HTTP still gets a unique key.
  const raw = crypto.getRandomValues(new Uint8Array(16));
  return [...raw].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function prepareAll(files) {
  const prepared = new Array(files.length);
  let next = 0;
  let finished = 0;
  async function worker() {
    while (next < files.length) {
      const index = next++;
      prepared[index] = await prepare(files[index]);
      say(`Preparing photos: ${++finished} of ${files.length}…`);
    }
  }
  await Promise.all(Array.from({ length: PREPARE_AT_ONCE }, worker));
  return prepared;
}

async function submitJob(files) {
  leaveJob();
  showSection(null);
  const prepared = await prepareAll(files);
  const body = new FormData();
  prepared.forEach((p, i) => body.append("files", p.upload, files[i].name));
  const before = prepared.reduce((sum, p) => sum + p.originalBytes, 0);
  const after = prepared.reduce((sum, p) => sum + p.sentBytes, 0);
  say(`Sending ${files.length} photos: ${bytes(after)} (${bytes(before)} before shrinking)…`);
  const thumbs = new Map(prepared.map((p, i) => [i, p.thumbUrl]));
  try {
    // The same key on every retry: a POST whose answer was lost is not submitted twice.
    const headers = { "Idempotency-Key": randomKey() };
    const accepted = await call("/jobs", { method: "POST", body, headers, say: sayRetry });
    history.pushState(null, "", `?job=${accepted.job_id}`);
    say("");
    follow(accepted.job_id, thumbs);
  } catch (error) {
    say("");
    problem(error);
    for (const url of thumbs.values()) if (url) URL.revokeObjectURL(url);
  }
}

function leaveJob() {
  if (!job) return;
  clearTimeout(job.timer);
  for (const url of job.thumbs.values()) if (url) URL.revokeObjectURL(url);
  job = null;
}

function follow(id, thumbs = new Map()) {
  leaveJob();
  problem(null);
  const current = { id, items: [], tiles: new Map(), thumbs, summary: null, timer: null };
  job = current;
  $("job-id").textContent = id;
  $("grid").replaceChildren();
  $("job-summary").textContent = "Loading the job…";
  showSection("job");
  poll(current);
}

function summaryText(s) {
  const finished = s.done + s.failed;
  switch (s.status) {
    case "queued":
      return `Queued: ${s.total} photos are waiting for a worker.`;
    case "running":
      return `Running: ${finished} of ${s.total} photos done, ${s.pending} to go.`;
    case "succeeded":
      return `Finished: ${s.done} of ${s.total} photos classified, ${s.failed} failed.`;
    case "cancelled":
      return `Cancelled: ${s.done} photos were classified before the cancel, ${s.failed} failed, and ${s.pending} were not classified.`;
    default:
      return `The job failed: ${s.done} photos classified, ${s.failed} failed.`;
  }
}

function renderSummary(current, s) {
  current.summary = s;
  $("job-summary").textContent = summaryText(s);
  $("job-progress").max = Math.max(1, s.total);
  $("job-progress").value = s.done + s.failed;
  $("count-done").textContent = s.done;
  $("count-failed").textContent = s.failed;
  $("count-total").textContent = s.total;
  $("cancel-job").disabled = TERMINAL.has(s.status);
}

function tileAnswer(item, terminal) {
  if (item.status === "succeeded") {
    const answer = el("p", "tile-answer");
    answer.append(el("span", `label ${item.label}`, item.label), ` ${percent(item.probability)}`);
    if (item.probability < LOW_CONFIDENCE) answer.append(el("span", "badge", "low confidence"));
    if (item.pet_detected === false) answer.append(el("span", "badge", NOT_A_PET));
    return answer;
  }
  if (item.status === "failed") return el("p", "tile-error", sentence(item.error?.reason));
  return el("p", "tile-pending", terminal ? "Not classified" : "Waiting…");
}

function tileFeedback(current, item) {
  const other = OTHER[item.label];
  if (item.status !== "succeeded" || !other) return [];
  const button = el("button", "tile-wrong", `Wrong: it is a ${other}`);
  button.type = "button";
  button.setAttribute("aria-label", `${item.filename} is wrong: it is a ${other}`);
  const status = el("p", "feedback-status");
  status.setAttribute("role", "status");
  const target = { job_id: current.id, index: item.index, label: other };
  button.addEventListener("click", () => correct(target, button, status, true));
  return [button, status];
}

function renderTile(current, item, terminal) {
  let tile = current.tiles.get(item.index);
  if (!tile) {
    tile = el("li", "tile");
    const thumb = current.thumbs.get(item.index);
    const picture = thumb ? el("img", "thumb") : el("div", "thumb no-thumb", "No preview");
    if (thumb) {
      picture.src = thumb;
      picture.alt = "";
    }
    tile.append(picture, el("p", "tile-name", item.filename), el("div", "tile-state"));
    current.tiles.set(item.index, tile);
    $("grid").append(tile);
  } else if (tile.dataset.status === item.status && item.status !== "pending") {
    return; // a finished item never changes
  }
  tile.dataset.status = item.status;
  tile.dataset.kinds = Object.keys(FILTERS)
    .filter((kind) => FILTERS[kind](item))
    .join(" ");
  tile.querySelector(".tile-state").replaceChildren(
    tileAnswer(item, terminal),
    ...tileFeedback(current, item),
  );
}

function applyFilter() {
  if (!job) return;
  const kind = document.querySelector("input[name=filter]:checked").value;
  let shown = 0;
  for (const tile of job.tiles.values()) {
    tile.hidden = !tile.dataset.kinds.split(" ").includes(kind);
    shown += tile.hidden ? 0 : 1;
  }
  $("grid-empty").hidden = shown > 0;
  for (const name of Object.keys(FILTERS)) {
    const count = job.items.filter((item) => item && FILTERS[name](item)).length;
    document.querySelector(`[data-count=${name}]`).textContent = `(${count})`;
  }
}

// The first index at or after `from` whose result may still change, or null.
function unresolvedFrom(current, from) {
  const total = current.summary?.total ?? Number.POSITIVE_INFINITY;
  for (let i = from; i < total; i++) {
    const item = current.items[i];
    if (!item || item.status === "pending") return i;
  }
  return null;
}

// One round of pages: from the first unresolved item on, skipping pages already final.
async function refresh(current) {
  let offset = unresolvedFrom(current, 0) ?? 0;
  while (offset !== null) {
    const page = await call(`/jobs/${current.id}?offset=${offset}&limit=${PAGE_SIZE}`, {
      say: sayRetry,
      retries: Number.POSITIVE_INFINITY,
    });
    if (current !== job) return;
    renderSummary(current, page);
    const terminal = TERMINAL.has(page.status);
    for (const item of page.results.items) {
      current.items[item.index] = item;
      renderTile(current, item, terminal);
    }
    const next = page.results.next_offset;
    offset = next === null ? null : unresolvedFrom(current, next);
  }
  applyFilter();
}

async function poll(current) {
  try {
    const wasTerminal = TERMINAL.has(current.summary?.status);
    await refresh(current);
    if (current !== job) return;
    // Once the status is final every item is written: one more round reads the last ones.
    if (wasTerminal) return;
  } catch (error) {
    if (current !== job) return;
    $("job-summary").textContent = "";
    problem(error);
    return;
  }
  current.timer = setTimeout(() => poll(current), TERMINAL.has(current.summary.status) ? 0 : POLL_MS);
}

async function cancelJob() {
  const current = job;
  $("cancel-job").disabled = true;
  try {
    const summary = await call(`/jobs/${current.id}`, { method: "DELETE", say: sayRetry });
    if (current === job) renderSummary(current, summary);
  } catch (error) {
    problem(error);
    $("cancel-job").disabled = !(error instanceof ApiError && error.status === 409);
  }
}

function downloadCsv() {
  const items = job.items.filter(Boolean);
  const url = URL.createObjectURL(new Blob([toCsv(items)], { type: "text/csv" }));
  const link = Object.assign(document.createElement("a"), { href: url, download: `job-${job.id}.csv` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

// --- wiring -----------------------------------------------------------------------------

async function handle(files) {
  problem(null);
  if (!files.length) {
    say("No photo was found there.");
    return;
  }
  if (files.length === 1) await classifyOne(files[0]);
  else await submitJob(files);
}

function followAddress() {
  const id = new URLSearchParams(location.search).get("job");
  if (id === null) {
    leaveJob();
    showSection(null);
  } else if (JOB_ID.test(id)) {
    follow(id);
  } else {
    problem(new ApiError(404, "job_not_found", `not a job id: ${id}`));
  }
}

function pickerInput(button, input, toFiles = (files) => [...files]) {
  $(button).addEventListener("click", () => $(input).click());
  $(input).addEventListener("change", () => {
    const files = toFiles($(input).files);
    $(input).value = "";
    handle(files);
  });
}

pickerInput("choose-photos", "photos-input");
pickerInput("choose-folder", "folder-input", photosOfFolder);
pickerInput("take-photo", "camera-input");

const zone = $("drop-zone");
// A drop that misses the zone must not make the browser navigate away to the photo.
for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());
zone.addEventListener("dragenter", () => zone.classList.add("over"));
zone.addEventListener("dragleave", (e) => {
  if (!zone.contains(e.relatedTarget)) zone.classList.remove("over");
});
zone.addEventListener("drop", async (event) => {
  zone.classList.remove("over");
  handle(await filesOfDrop(event.dataTransfer));
});

$("cancel-job").addEventListener("click", cancelJob);
$("download-csv").addEventListener("click", downloadCsv);
for (const radio of document.querySelectorAll("input[name=filter]")) {
  radio.addEventListener("change", applyFilter);
}
window.addEventListener("popstate", followAddress);
followAddress();
