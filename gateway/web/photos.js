// Photos, before they leave the browser: shrunk when larger than the model needs (upright,
// whatever their EXIF orientation says), a small thumbnail for the page, and the files of
// a dropped folder.

// The served models read a 224-pixel short side (params.yaml, model.resize_size). Twice
// that leaves the service's own antialiased resize to do the last step, so the answer does
// not change, while a phone's 12 MP photo goes up as a few dozen KB instead of megabytes.
export const UPLOAD_SHORT_SIDE = 448;
const THUMB_SHORT_SIDE = 160;
const UPLOAD_QUALITY = 0.9;
const THUMB_QUALITY = 0.8;

// The same suffixes as the `catdog` client's folder walk (client/api.py), plus the HEIC
// photos of iPhones, which a browser that can decode them sends on as JPEG.
const PHOTO_SUFFIX = /\.(jpe?g|png|webp|bmp|gif|tiff?|heic|heif)$/i;

async function encode(bitmap, scale, quality) {
  const width = Math.max(1, Math.round(bitmap.width * scale));
  const height = Math.max(1, Math.round(bitmap.height * scale));
  const canvas =
    typeof OffscreenCanvas === "function"
      ? new OffscreenCanvas(width, height)
      : Object.assign(document.createElement("canvas"), { width, height });
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff"; // JPEG has no transparency: a PNG's clear pixels become white
  ctx.fillRect(0, 0, width, height);
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bitmap, 0, 0, width, height);
  const blob = canvas.convertToBlob
    ? await canvas.convertToBlob({ type: "image/jpeg", quality })
    : await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", quality));
  return { blob, width, height };
}

/**
 * What to upload for `file`, and how it went: `{upload, thumbUrl, originalBytes, sentBytes,
 * width, height, resized}`. A file the browser cannot decode goes up as it is, so the
 * service gives its reason (not a photo, damaged, ...).
 */
export async function prepare(file) {
  const report = { upload: file, thumbUrl: null, originalBytes: file.size, resized: false };
  let bitmap;
  try {
    // The pixels come out upright: the EXIF orientation is applied while decoding.
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    return { ...report, sentBytes: file.size };
  }
  try {
    const shortSide = Math.min(bitmap.width, bitmap.height);
    let { width, height } = bitmap;
    if (shortSide > UPLOAD_SHORT_SIDE) {
      const shrunk = await encode(bitmap, UPLOAD_SHORT_SIDE / shortSide, UPLOAD_QUALITY);
      if (shrunk.blob && shrunk.blob.size < file.size) {
        report.upload = new File([shrunk.blob], file.name, { type: "image/jpeg" });
        report.resized = true;
        ({ width, height } = shrunk);
      }
    }
    const thumb = await encode(bitmap, Math.min(1, THUMB_SHORT_SIDE / shortSide), THUMB_QUALITY);
    report.thumbUrl = thumb.blob ? URL.createObjectURL(thumb.blob) : null;
    return { ...report, sentBytes: report.upload.size, width, height };
  } finally {
    bitmap.close();
  }
}

// A photo by its name, not inside a hidden folder (.git, .thumbnails) nor hidden itself.
function isPhotoPath(path) {
  return PHOTO_SUFFIX.test(path) && !path.split("/").some((part) => part.startsWith("."));
}

const byPath = (a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

/** The photos of a folder picked with <input webkitdirectory>, in path order. */
export function photosOfFolder(files) {
  return [...files]
    .map((file) => ({ path: file.webkitRelativePath || file.name, file }))
    .filter(({ path }) => isPhotoPath(path))
    .sort(byPath)
    .map(({ file }) => file);
}

function readEntries(reader) {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

async function walk(entry, prefix, out) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    out.push({ path: prefix + file.name, file });
    return;
  }
  const reader = entry.createReader();
  for (let batch = await readEntries(reader); batch.length; batch = await readEntries(reader)) {
    for (const child of batch) await walk(child, `${prefix}${entry.name}/`, out);
  }
}

/** The files of a drop: plain files as they are, dropped folders walked for their photos. */
export async function filesOfDrop(dataTransfer) {
  // Entries must be taken before the first await: the drop's items die with the event.
  const entries = [...dataTransfer.items]
    .filter((item) => item.kind === "file")
    .map((item) => item.webkitGetAsEntry?.())
    .filter(Boolean);
  if (!entries.some((entry) => entry.isDirectory)) return [...dataTransfer.files];
  const found = [];
  for (const entry of entries) await walk(entry, "", found);
  return found
    .filter(({ path }) => isPhotoPath(path))
    .sort(byPath)
    .map(({ file }) => file);
}
