// Every error the API can answer, as a sentence a person understands. The API's `reason`
// codes are stable (gateway/errors.py, common/imaging.py, worker/inference.py); its `detail`
// text is for developers, so it is shown only as a detail under the sentence.

const BY_REASON = {
  // The photo itself (a /predict answer, or one item of a job).
  empty: "This file is empty (0 bytes), so there is no photo to look at.",
  not_an_image: "This file is not a photo. Choose a JPEG, PNG, WebP, GIF, BMP or TIFF image.",
  unsupported_media_type:
    "This kind of file is not supported. Choose a JPEG, PNG, WebP, GIF, BMP or TIFF photo.",
  truncated: "This photo is damaged: the file is cut short. Try another copy of it.",
  undecodable: "This photo could not be read; the file may be damaged. Try another copy of it.",
  too_small: "This photo is too small to classify: each side must be at least 32 pixels.",
  decompression_bomb: "This image claims to be far too many pixels to open safely.",
  too_large: "This photo is larger than the service accepts. Try a smaller copy of it.",
  image_missing: "This photo was no longer stored when its turn came. Submit it again.",
  max_deliveries: "Classifying this photo kept failing, so it was skipped. Submit it again.",
  inference_failed: "The classifier failed on this photo. Try again, or try another photo.",
  model_not_available: "The classifier's model is not loaded, so nothing can be classified now.",
  // Requests.
  too_many_files: "That is too many photos for one job. Send them in smaller groups.",
  request_too_large: "These photos add up to more than one job accepts. Send smaller groups.",
  missing_field: "The service did not receive any photo. Choose the photos again.",
  invalid_field: "The service refused part of the request. Reload the page and try again.",
  malformed_request: "The upload arrived broken. Check your connection and try again.",
  validation_error: "The service did not understand the request. Reload the page and try again.",
  idempotency_conflict: "This upload is still being received. Wait a moment, then try again.",
  // Jobs.
  job_not_found: "This job does not exist. Check the link, or submit the photos again.",
  job_expired: "This job's results have expired and were deleted. Submit the photos again.",
  job_finished: "The job had already finished, so there was nothing left to cancel.",
  // Feedback.
  prediction_not_found: "This answer is no longer on record, so the correction was not counted.",
  feedback_conflict: "This photo was already corrected with the other label; that one stands.",
  // The service.
  queue_full: "The service is busy right now: its queue is full.",
  no_worker: "No classifier is running right now, so photos cannot be classified.",
  broker_unavailable: "The service's queue cannot be reached right now.",
  storage_full: "The service's storage is full right now. Try again in a minute.",
  insufficient_storage: "The service cannot store that many photos right now. Try again later, or send fewer at once.",
  timeout: "The classifier did not answer in time; the service may be overloaded.",
  connection_lost: "The service cannot be reached. Check the network connection, then try again.",
};

export const KEY_NEEDED =
  "This service needs an API key. Enter it below; it is kept in this browser tab only.";
export const KEY_REJECTED = "That API key was not accepted. Check it and enter it again.";

const BY_STATUS = {
  401: KEY_NEEDED,
  403: "This API key is not allowed to do that.",
  404: "The service could not find what was asked for.",
  409: "That conflicts with what already happened; reload the page to see the latest state.",
  410: "This has expired and was deleted.",
  413: "This upload is larger than the service accepts. Send fewer or smaller photos.",
  415: BY_REASON.unsupported_media_type,
  422: "The service could not use this file.",
  429: BY_REASON.queue_full,
  500: "The service failed unexpectedly. Try again in a moment.",
  502: "The service is restarting or unreachable. Try again in a moment.",
  503: "The service is not ready right now. Try again in a moment.",
  504: BY_REASON.timeout,
};

/** The sentence for an API error (`status`, `reason`), or an item's error (`reason` only). */
export function sentence(reason, status) {
  if (status === 401) return BY_STATUS[401];
  return (
    BY_REASON[reason] ||
    BY_STATUS[status] ||
    (status ? `The service answered with an unexpected error (HTTP ${status}).` : null) ||
    "This photo could not be classified."
  );
}

export function seconds(n) {
  return n === 1 ? "1 second" : `${n} seconds`;
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${Math.round(n / 1024)} KB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MB`;
}

export function percent(p) {
  return `${(p * 100).toFixed(1)}%`;
}
