// video-ai's page: plain ES module, no build step. The API key lives in sessionStorage and travels only in the
// x-api-key header of fetch() calls; nothing here puts it in a URL (thumbnails are fetched, then shown as blob: URLs).

const KEY = "video-ai.api-key";
const BASE = location.pathname.replace(/\/ui\/.*$/, "");
const SHOTS_PAGE = 60;
const LINES_PAGE = 200; // transcript lines rendered at a time (a 2 h talk has ~2,000)
const TEXT_PAGE = 100; // on-screen text lines per GET /jobs/{id}/text page
const POLL_MS = 1500;
const $ = (selector) => document.querySelector(selector);

const MESSAGES = {
  unauthorized: "The API refused this key.",
  not_found: "Not found.",
  job_not_found: "Not found: no such job for this key.",
  forbidden_address: "The video's address is not allowed (a private or loopback address?).",
  source_too_large: "The video is larger than this deployment accepts.",
  unsupported_media: "The file is not a video this service can decode.",
  no_video_stream: "The file has no video stream.",
  corrupt_media: "The video is damaged and could not be decoded.",
  empty_video: "The video has no frames.",
  decode_timeout: "Decoding took too long.",
  fetch_failed: "The video could not be downloaded.",
  video_not_found: "The video was not found at its address.",
  retries_exhausted: "The job failed after several attempts.",
  source_changed: "The video changed while it was being analysed.",
  feature_unavailable: "A requested feature is not available here.",
};

// A job's error is about its video: "not_found" there means the source, not an API resource.
const JOB_MESSAGES = { ...MESSAGES, not_found: MESSAGES.video_not_found };

export function jobError(error) {
  return readable(new ApiError(0, error.code, error.message), JOB_MESSAGES);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function readable(error, messages = MESSAGES) {
  if (!(error instanceof ApiError)) return String(error.message || error);
  const known = messages[error.code];
  return known ? `${known} (${error.code}: ${error.message})` : `${error.code}: ${error.message}`;
}

async function call(path, { method = "GET", body, raw = false, cache = "no-store" } = {}) {
  const headers = { "x-api-key": sessionStorage.getItem(KEY) || "" };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(BASE + path, {
    method, headers, cache, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    let error = {};
    try { error = (await response.json()).error || {}; } catch { /* not JSON: keep the status */ }
    const failure = new ApiError(response.status, error.code || "http_error", error.message || response.statusText);
    if (response.status === 401 && !raw) signOut(readable(failure));
    throw failure;
  }
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

export function clock(seconds) {
  const s = Math.max(0, seconds);
  const m = Math.floor(s / 60);
  return `${m}:${(s - 60 * m).toFixed(3).padStart(6, "0")}`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function show(id) {
  for (const section of ["signin", "home", "job", "results"]) $(`#${section}`).hidden = section !== id;
  const signedIn = id !== "signin";
  $("#search-form").hidden = !signedIn;
  $("#sign-out").hidden = !signedIn;
}

// ---- sign in

let timer = null;
function stopPolling() { if (timer !== null) { clearTimeout(timer); timer = null; } }
function poll(fn) { stopPolling(); timer = setTimeout(fn, POLL_MS); }

function signOut(message) {
  sessionStorage.removeItem(KEY);
  stopPolling();
  revokeThumbnails();
  show("signin");
  const error = $("#signin-error");
  error.textContent = message || "";
  error.hidden = !message;
}

async function signIn(event) {
  event.preventDefault();
  const input = $("#signin-key");
  sessionStorage.setItem(KEY, input.value.trim());
  input.value = "";
  try {
    await call("/jobs?limit=1", { raw: true });
  } catch (error) {
    signOut(error.status === 401 ? `Sign-in failed: ${readable(error)}` : `Sign-in failed: ${readable(error)}`);
    return;
  }
  $("#signin-error").hidden = true;
  route();
}

// ---- jobs

let jobsToken = null;

function jobRow(job) {
  const source = job.source.url || (job.source.s3 ? `s3://${job.source.s3.bucket}/${job.source.s3.key}` : "");
  const status = el("td", { class: `status-${job.status}` }, job.status);
  if (job.error) {
    const why = jobError(job.error);
    status.append(el("div", { class: "job-error" }, why));
  }
  return el("tr", { "data-job": job.job_id },
    el("td", {}, el("a", { href: `#/jobs/${encodeURIComponent(job.job_id)}` }, job.job_id)),
    status,
    el("td", {}, `${Math.round((job.progress || 0) * 100)}%`),
    el("td", { class: "source", title: source }, source),
    el("td", {}, job.created_at.replace("T", " ").slice(0, 19)));
}

async function loadJobs() {
  try {
    const page = await call("/jobs?limit=50");
    $("#jobs tbody").replaceChildren(...page.items.map(jobRow));
    jobsToken = page.next_token;
    $("#jobs-more").hidden = !jobsToken;
  } catch (error) {
    $("#submit-result").textContent = `Could not list jobs: ${readable(error)}`;
  }
  if (!$("#home").hidden) poll(loadJobs);
}

async function moreJobs() {
  if (!jobsToken) return;
  const page = await call(`/jobs?limit=50&next_token=${encodeURIComponent(jobsToken)}`);
  $("#jobs tbody").append(...page.items.map(jobRow));
  jobsToken = page.next_token;
  $("#jobs-more").hidden = !jobsToken;
}

async function submit(event) {
  event.preventDefault();
  const source = $("#submit-source").value.trim();
  const body = source.startsWith("s3://") ? { s3_uri: source } : { video_url: source };
  const features = [...document.querySelectorAll("input[name=feature]:checked")].map((c) => c.value);
  if (features.length) body.features = features;
  const sampling = {};
  if ($("#submit-mode").value) sampling.mode = $("#submit-mode").value;
  if ($("#submit-fps").value) sampling.fps = Number($("#submit-fps").value);
  if (Object.keys(sampling).length) body.sampling = sampling;
  try {
    const accepted = await call("/analyze", { method: "POST", body });
    $("#submit-result").replaceChildren("Submitted ",
      el("a", { href: `#/jobs/${encodeURIComponent(accepted.job_id)}` }, accepted.job_id), ` (${accepted.status})`);
    loadJobs();
  } catch (error) {
    $("#submit-result").textContent = `Refused: ${readable(error)}`;
  }
}

// ---- upload: the API signs an S3 POST into this tenant's prefix; the file goes to S3, never through the API

function s3Refusal(text, status) {
  const code = /<Code>([^<]+)<\/Code>/.exec(text);
  const message = /<Message>([^<]+)<\/Message>/.exec(text);
  return `${code ? code[1] : `HTTP ${status}`}${message ? `: ${message[1]}` : ""}`;
}

async function upload(event) {
  event.preventDefault();
  const file = $("#upload-file").files[0];
  const status = $("#upload-result");
  if (!file) return;
  let ticket;
  try {
    ticket = await call("/uploads", { method: "POST", body: {
      filename: file.name, size: file.size, content_type: file.type || "application/octet-stream" } });
  } catch (error) {
    status.textContent = `Upload refused: ${readable(error)}`;
    return;
  }
  const form = new FormData();
  for (const [name, value] of Object.entries(ticket.fields)) form.append(name, value);
  form.append("file", file);
  status.textContent = `Uploading ${file.name} (${Math.ceil(file.size / 1024)} KiB)…`;
  try {
    const response = await fetch(ticket.url, { method: "POST", body: form });
    if (!response.ok) {
      status.textContent = `S3 refused the upload: ${s3Refusal(await response.text(), response.status)}`;
      return;
    }
  } catch (error) {
    status.textContent = `Upload failed: ${error.message}`;
    return;
  }
  status.textContent = `Uploaded ${file.name}; waiting for its job…`;
  // S3's notification makes the job (the ingest function): find it by its key.
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const page = await call("/jobs?limit=50");
    const job = page.items.find((j) => j.source.s3 && j.source.s3.key === ticket.key);
    if (job) {
      status.replaceChildren(`Uploaded ${file.name}: job `,
        el("a", { href: `#/jobs/${encodeURIComponent(job.job_id)}` }, job.job_id));
      return;
    }
    await new Promise((ok) => setTimeout(ok, 1000));
  }
  status.textContent = `Uploaded ${file.name}, but no job appeared within a minute.`;
}

// ---- one job

let current = null; // {job, shots, labels, frames, shown, seekTo}
let blobUrls = [];
let observer = null;

function revokeThumbnails() {
  for (const url of blobUrls) URL.revokeObjectURL(url);
  blobUrls = [];
  if (observer) observer.disconnect();
}

// Moment hits (words) name a time, not a sampled frame: their picture is the job's sampled frame at or before the
// moment's representative time, from the job's frame list (fetched once per job per search, 1,000 frames a request).
let framesByJob = new Map();

function framesOf(job) {
  if (!framesByJob.has(job)) framesByJob.set(job, allPages(`/jobs/${encodeURIComponent(job)}/frames?limit=1000`, 20000));
  return framesByJob.get(job);
}

async function loadThumbnail(img) {
  if ((img.dataset.frame === undefined && img.dataset.pts === undefined) || img.dataset.state) return;
  img.dataset.state = "loading";
  try {
    const job = img.dataset.job || current.job.job_id;
    let index = img.dataset.frame;
    if (index === undefined) {
      const frames = await framesOf(job);
      if (!frames.length) throw new Error("no frames");
      index = String(frames[Math.max(0, lastAtOrBefore(frames, Number(img.dataset.pts), "pts_s"))].index);
      img.dataset.frame = index;
    }
    const response = await call(`/jobs/${encodeURIComponent(job)}/frames/${index}/thumbnail`,
      { raw: true, cache: "default" });
    const url = URL.createObjectURL(await response.blob());
    blobUrls.push(url);
    await new Promise((ok, fail) => { img.onload = ok; img.onerror = fail; img.src = url; });
    img.dataset.state = "loaded";
  } catch {
    img.dataset.state = "missing";
    img.alt = "no thumbnail";
  }
}

function seek(seconds) {
  const video = $("#player");
  if (video.readyState >= 1) video.currentTime = seconds;
  else current.seekTo = seconds;
  markAt(seconds);
}

function thumbnailObserver() {
  const watcher = new IntersectionObserver((entries) => {
    for (const entry of entries) if (entry.isIntersecting) { watcher.unobserve(entry.target); loadThumbnail(entry.target); }
  }, { rootMargin: "200px" });
  return watcher;
}

function firstFrameOfShot(frames, shot) {
  const frame = frames.find((f) => f.shot === shot);
  return frame ? frame.index : undefined;
}

function shotItem(shot) {
  const labels = current.labels.get(shot.index) || [];
  const words = labels.slice(0, 5).map((l) => `${l.name} ${Math.round(l.confidence * 100)}%`).join(", ");
  const frame = firstFrameOfShot(current.frames, shot.index);
  const img = el("img", { class: "thumb", alt: `shot ${shot.index}` });
  if (frame !== undefined) {
    img.dataset.frame = String(frame);
    observer.observe(img);
  } else {
    img.dataset.state = "missing";
  }
  const button = el("button", { type: "button", "data-start": String(shot.start_s), "data-end": String(shot.end_s),
    "data-shot": String(shot.index) }, img,
    el("span", { class: "time" }, `${clock(shot.start_s)} – ${clock(shot.end_s)}`), " ",
    el("span", {}, `shot ${shot.index}`),
    el("div", { class: "labels" }, words || (current.labelsNote ? "" : "no labels")));
  button.addEventListener("click", () => seek(shot.start_s));
  const similar = frame === undefined ? null : el("a", { class: "similar",
    href: `#/similar/${encodeURIComponent(current.job.job_id)}/${frame}` }, "more like this");
  return el("li", {}, button, similar);
}

function renderMoreShots() {
  const next = current.shots.slice(current.shown, current.shown + SHOTS_PAGE);
  $("#shots").append(...next.map(shotItem));
  current.shown += next.length;
  $("#shots-more").hidden = current.shown >= current.shots.length;
}

async function allPages(path, cap) {
  const items = [];
  let token = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const page = await call(token ? `${path}${sep}next_token=${encodeURIComponent(token)}` : path);
    items.push(...page.items);
    token = page.next_token;
    if (page.reason) items.reason = page.reason;
  } while (token && items.length < cap);
  return items;
}

async function setPlayer(job) {
  const video = $("#player");
  const note = $("#player-note");
  note.hidden = true;
  note.textContent = "";
  if (video.dataset.job === job.job_id && video.getAttribute("src")) {
    // The same job again (a poll, or a hit at another moment): keep the player, and its presigned URL.
    if (video.readyState >= 1 && current.seekTo !== null) { const t = current.seekTo; current.seekTo = null; seek(t); }
    return;
  }
  let url = job.source.url && /^https?:\/\//.test(job.source.url) ? job.source.url : null;
  if (!url && job.source.s3) {
    // A short-lived presigned URL from the API: the page never holds S3 credentials, and the key stays in headers.
    try {
      url = (await call(`/jobs/${encodeURIComponent(job.job_id)}/video`)).url;
    } catch (error) {
      note.textContent = `The video cannot be played here: ${readable(error)}`;
    }
  }
  if (!url) {
    video.removeAttribute("src");
    if (!note.textContent) note.textContent = "This job's source has no address a browser can play.";
    note.hidden = false;
    return;
  }
  video.onerror = () => {
    note.textContent = job.source.s3 ? "The browser could not play the video from S3 (expired link, or no access)." :
      `The browser cannot play ${url} (unreachable from here, or a format it cannot play).`;
    note.hidden = false;
  };
  video.onloadedmetadata = () => {
    if (current && current.seekTo !== null) { const t = current.seekTo; current.seekTo = null; seek(t); }
  };
  video.dataset.job = job.job_id;
  video.src = url;
}

function markAt(t) {
  // The shot, transcript line and on-screen text under the playhead stay outlined while the video plays or is scrubbed.
  for (const button of document.querySelectorAll("#shots button")) {
    button.classList.toggle("current", Number(button.dataset.start) <= t && t < Number(button.dataset.end));
  }
  if (current) { markTranscript(t); markText(t); }
}

function markPlaying() { markAt($("#player").currentTime); }

// ---- transcript and on-screen text (features speech, ocr): shown only for jobs that asked for them

// The last item whose `key` time is at or before t (items in time order), or -1: a binary search, so the playhead's
// 4 Hz timeupdate costs log(n) on a 2 h transcript.
export function lastAtOrBefore(items, t, key = "start_s") {
  let [lo, hi] = [0, items.length - 1];
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (items[mid][key] <= t) { found = mid; lo = mid + 1; } else hi = mid - 1;
  }
  return found;
}

function momentLink(item, ...content) {
  // A real link (to copy, or open in a tab at that moment); a plain click seeks the player in place, and the address
  // follows without a reload (replaceState fires no hashchange).
  const href = `#/jobs/${encodeURIComponent(current.job.job_id)}?t=${item.start_s}`;
  const link = el("a", { href, "data-start": String(item.start_s), "data-end": String(item.end_s),
    title: `confidence ${Math.round((item.confidence ?? 0) * 100)}%` }, ...content);
  link.addEventListener("click", (event) => {
    if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    history.replaceState(null, "", href);
    seek(item.start_s);
  });
  return link;
}

function showNote(id, text) {
  $(id).textContent = text || "";
  $(id).hidden = !text;
}

function resetWords() {
  for (const name of ["transcript", "ocr-text", "ocr-boxes"]) $(`#${name}`).replaceChildren();
  for (const name of ["transcript", "text"]) {
    $(`#${name}-box`).hidden = true;
    $(`#${name}-more`).hidden = true;
    showNote(`#${name}-note`, "");
  }
  $("#transcript-meta").textContent = "";
}

function renderTranscript(upTo = 0) {
  const words = current.transcript;
  // A jump far ahead (a search hit, a scrub) renders up to a little past that line, so it can sit mid-box.
  const end = Math.min(words.segments.length, Math.max(words.shown + LINES_PAGE, upTo + 20));
  const items = words.segments.slice(words.shown, end).map((segment, k) =>
    el("li", { "data-line": String(words.shown + k) }, momentLink(segment,
      el("span", { class: "time" }, clock(segment.start_s)), " ", segment.text.trim())));
  $("#transcript").append(...items);
  words.shown = end;
  const left = words.segments.length - end;
  $("#transcript-more").hidden = left <= 0;
  $("#transcript-more").textContent = `More lines (${left} left)`;
}

function markTranscript(t) {
  const words = current.transcript;
  if (!words || !words.segments.length) return;
  let line = lastAtOrBefore(words.segments, t);
  if (line >= 0 && t >= words.segments[line].end_s) line = -1; // a pause between lines
  if (line === words.marked) return;
  const box = $("#transcript");
  if (words.marked >= 0) box.children[words.marked]?.classList.remove("current");
  words.marked = line;
  if (line < 0) return;
  if (line >= words.shown) renderTranscript(line);
  const item = box.children[line];
  item.classList.add("current");
  // Keep the line in view inside the transcript's own scroll box, never scrolling the page under the reader.
  if (item.offsetTop < box.scrollTop || item.offsetTop + item.offsetHeight > box.scrollTop + box.clientHeight) {
    box.scrollTop = item.offsetTop - box.clientHeight / 3;
  }
}

function renderText(items) {
  current.text.items.push(...items);
  $("#ocr-text").append(...items.map((line) => el("li", {}, momentLink(line,
    el("span", { class: "time" }, `${clock(line.start_s)} – ${clock(line.end_s)}`), " ", line.text))));
}

function pictureRect(video) {
  // Where the picture sits inside the <video> box (object-fit: contain letterboxes it), relative to #player-box.
  const scale = Math.min(video.clientWidth / video.videoWidth, video.clientHeight / video.videoHeight);
  const [width, height] = [video.videoWidth * scale, video.videoHeight * scale];
  return { left: video.offsetLeft + (video.clientWidth - width) / 2, top: video.offsetTop + (video.clientHeight - height) / 2,
    width, height };
}

function markText(t) {
  if (!current.text) return;
  const links = $("#ocr-text").children;
  const video = $("#player");
  const boxes = [];
  const picture = video.videoWidth ? pictureRect(video) : null;
  current.text.items.forEach((line, k) => {
    // Half-open, as the ranges meet (one line leaves at the time the next arrives); a single read is its instant.
    const on = line.start_s <= t && (t < line.end_s || t === line.start_s);
    links[k].firstChild.classList.toggle("current", on);
    if (on && picture && line.box) {
      // The line's box over the picture (boxes are fractions of the upright frame, as the browser shows it).
      const box = el("div", { class: "ocr-box", title: line.text });
      box.style.left = `${picture.left + line.box.left * picture.width}px`;
      box.style.top = `${picture.top + line.box.top * picture.height}px`;
      box.style.width = `${line.box.width * picture.width}px`;
      box.style.height = `${line.box.height * picture.height}px`;
      boxes.push(box);
    }
  });
  $("#ocr-boxes").replaceChildren(...boxes);
}

async function loadTranscript(id) {
  $("#transcript-box").hidden = false;
  showNote("#transcript-note", "Loading the transcript…");
  let doc;
  try {
    // Whole (the playhead may jump to any line), but without word timings: the page shows lines, and the words
    // are most of a long talk's bytes.
    doc = await call(`/jobs/${encodeURIComponent(id)}/transcript?format=json&words=false`);
  } catch (error) {
    if (current && current.job.job_id === id) showNote("#transcript-note", `No transcript: ${readable(error)}`);
    return;
  }
  if (!current || current.job.job_id !== id) return;
  current.transcript = { segments: doc.segments, shown: 0, marked: -1 };
  const about = [doc.language, doc.model].filter(Boolean).join(", ");
  $("#transcript-meta").textContent = about ? `(${about})` : "";
  showNote("#transcript-note", doc.segments.length ? "" : doc.reason || "No speech was found.");
  renderTranscript();
  markTranscript($("#player").currentTime || current.seekTo || 0);
}

async function loadText(id) {
  const first = !current.text;
  $("#text-more").disabled = true;
  if (first) {
    $("#text-box").hidden = false;
    showNote("#text-note", "Loading the on-screen text…");
  }
  const token = first ? null : current.text.token;
  const query = `limit=${TEXT_PAGE}${token ? `&next_token=${encodeURIComponent(token)}` : ""}`;
  let page;
  try {
    page = await call(`/jobs/${encodeURIComponent(id)}/text?${query}`);
  } catch (error) {
    if (current && current.job.job_id === id) showNote("#text-note", `No on-screen text: ${readable(error)}`);
    $("#text-more").disabled = false;
    return;
  }
  if (!current || current.job.job_id !== id) return;
  if (first) current.text = { items: [] };
  current.text.token = page.next_token;
  if (first) showNote("#text-note", page.items.length ? "" : page.reason || "No text was read on screen.");
  renderText(page.items);
  $("#text-more").hidden = !page.next_token;
  $("#text-more").disabled = false;
  markText($("#player").currentTime || current.seekTo || 0);
}

function jobStatusText(job) {
  const parts = [job.status];
  if (!["succeeded", "failed"].includes(job.status)) parts.push(`${Math.round((job.progress || 0) * 100)}%`);
  if (job.video) parts.push(`${job.video.width}×${job.video.height}, ${clock(job.video.duration_s || 0)}`);
  parts.push(`${job.frames_indexed} frames, ${job.shots_detected} shots`);
  return parts.join(" · ");
}

async function openJob(id, at) {
  revokeThumbnails();
  delete document.body.dataset.jobReady;
  $("#shots").replaceChildren();
  $("#shots-more").hidden = true;
  resetWords();
  $("#job-title").textContent = id;
  $("#job-error").hidden = true;
  let job;
  try {
    job = await call(`/jobs/${encodeURIComponent(id)}`);
  } catch (error) {
    $("#job-status").textContent = error.status === 404 ? "Job not found." : `Could not load the job: ${readable(error)}`;
    $("#player").removeAttribute("src");
    delete $("#player").dataset.job;
    $("#player-note").hidden = true;
    return;
  }
  current = { job, shots: [], labels: new Map(), frames: [], shown: 0, seekTo: at ?? null, labelsNote: null,
    transcript: null, text: null };
  $("#job-status").textContent = jobStatusText(job);
  if (job.error) {
    $("#job-error").textContent = jobError(job.error);
    $("#job-error").hidden = false;
  }
  await setPlayer(job);
  if (job.status !== "succeeded") {
    $("#shots-note").textContent = job.status === "failed" ? "The job failed: no shots." : "Shots appear when the job succeeds.";
    $("#shots-note").hidden = false;
    if (job.status !== "failed") poll(() => openJob(id, current ? current.seekTo : at));
    return;
  }
  $("#shots-note").hidden = true;
  const path = `/jobs/${encodeURIComponent(id)}`;
  const features = job.features || [];
  const words = Promise.all([features.includes("speech") ? loadTranscript(id) : null,
    features.includes("ocr") ? loadText(id) : null]);
  const [shots, labels, frames] = await Promise.all([
    call(`${path}/shots`).then((p) => p.items),
    allPages(`${path}/labels?limit=500`, 100000).catch(() => []),
    allPages(`${path}/frames?limit=1000`, 100000).catch(() => []),
  ]);
  if (!current || current.job.job_id !== id) return;
  current.shots = shots;
  current.frames = frames;
  for (const shot of labels) current.labels.set(shot.shot, shot.labels);
  if (labels.reason) { $("#shots-note").textContent = labels.reason; $("#shots-note").hidden = false; }
  observer = thumbnailObserver();
  renderMoreShots();
  await words;
  if (!current || current.job.job_id !== id) return;
  document.body.dataset.jobReady = id;
  performance.mark("job-ready");
}

// ---- search

function highlighted(text, words) {
  const span = el("span");
  if (!words || !words.length) { span.textContent = text; return span; }
  const pattern = new RegExp(`(${words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})`, "gi");
  for (const part of text.split(pattern)) {
    span.append(words.some((w) => w.toLowerCase() === part.toLowerCase()) ? el("mark", {}, part) : part);
  }
  return span;
}

const KINDS = { label: "seen", speech: "said", ocr: "written" };

function hitItem(hit) {
  // Moment hits (text) carry kind, text and start_s; frame hits (image, more like this) carry index and pts_s.
  const start = hit.start_s ?? hit.pts_s;
  const img = el("img", { class: "thumb", alt: "" });
  img.dataset.job = hit.job_id;
  if (hit.index !== undefined && hit.index !== null) img.dataset.frame = String(hit.index);
  else img.dataset.pts = String(hit.pts_s);
  observer.observe(img);
  const what = hit.kind ? [` ${KINDS[hit.kind] || hit.kind} · `, el("q", { class: "said" }, highlighted(hit.text, hit.matched)),
    hit.matched && hit.matched.length ? el("span", { class: "matched" }, ` · matched ${hit.matched.join(", ")}`) : null]
    : [` frame ${hit.index} · shot ${hit.shot}`];
  return el("li", {}, el("a", { href: `#/jobs/${encodeURIComponent(hit.job_id)}?t=${start}`, "data-job": hit.job_id,
    "data-start": String(start), "data-kind": hit.kind || "frame" }, img, el("span", { class: "time" }, clock(start)),
    ...what,
    ` · job ${hit.job_id} · score ${hit.score.toFixed(3)}`));
}

async function search(body, what) {
  show("results");
  revokeThumbnails();
  observer = thumbnailObserver();
  framesByJob = new Map();
  $("#hits").replaceChildren();
  $("#results-note").textContent = "Searching…";
  try {
    const result = await call("/search", { method: "POST", body: { top_k: 20, ...body } });
    const n = result.items.length;
    $("#results-note").textContent = n ? `${n} ${n === 1 ? "hit" : "hits"} for ${what}` : `No hits for ${what}.`;
    $("#hits").replaceChildren(...result.items.map(hitItem));
  } catch (error) {
    $("#results-note").textContent = `Search failed: ${readable(error)}`;
  }
}

function imageBase64(file) {
  return new Promise((ok, fail) => {
    const reader = new FileReader();
    reader.onload = () => ok(String(reader.result).replace(/^data:[^,]*,/, ""));
    reader.onerror = () => fail(reader.error);
    reader.readAsDataURL(file);
  });
}

async function searchImage(file) {
  if (!file || !/^image\/(png|jpeg)$/.test(file.type)) {
    show("results");
    $("#hits").replaceChildren();
    $("#results-note").textContent = "Search by image takes a PNG or JPEG.";
    return;
  }
  await search({ image_base64: await imageBase64(file) }, `the image “${file.name || "pasted"}”`);
}

// ---- routing: #/ (jobs), #/jobs/<id>[?t=<seconds>], #/search?q=<words>

function route() {
  stopPolling();
  if (!sessionStorage.getItem(KEY)) { show("signin"); return; }
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query || "");
  const job = /^\/jobs\/([^/]+)$/.exec(path || "");
  const similar = /^\/similar\/([^/]+)\/(\d+)$/.exec(path || "");
  if (job) {
    show("job");
    const t = params.get("t");
    openJob(decodeURIComponent(job[1]), t === null ? null : Number(t));
  } else if (path === "/search" && params.get("q")) {
    search({ text: params.get("q") }, `“${params.get("q")}”`);
  } else if (similar) {
    const [id, index] = [decodeURIComponent(similar[1]), Number(similar[2])];
    search({ frame: { job_id: id, index } }, `frame ${index} of job ${id}`);
  } else {
    show("home");
    loadJobs();
  }
}

$("#signin-form").addEventListener("submit", signIn);
$("#sign-out").addEventListener("click", () => signOut(""));
$("#submit-form").addEventListener("submit", submit);
$("#upload-form").addEventListener("submit", upload);
$("#player").addEventListener("timeupdate", markPlaying);
$("#jobs-more").addEventListener("click", moreJobs);
$("#shots-more").addEventListener("click", renderMoreShots);
$("#transcript-more").addEventListener("click", () => renderTranscript());
$("#text-more").addEventListener("click", () => loadText(current.job.job_id));
$("#search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  location.hash = `#/search?q=${encodeURIComponent($("#search-text").value.trim())}`;
});
$("#search-image").addEventListener("change", (event) => searchImage(event.target.files[0]));
for (const type of ["dragover", "drop"]) {
  $("#drop-zone").addEventListener(type, (event) => {
    event.preventDefault();
    if (type === "drop") searchImage(event.dataTransfer.files[0]);
  });
}
document.addEventListener("paste", (event) => {
  const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
  if (file && sessionStorage.getItem(KEY)) { event.preventDefault(); searchImage(file); }
});
window.addEventListener("hashchange", route);
window.addEventListener("resize", () => { if (current && !$("#job").hidden) markPlaying(); });
route();
