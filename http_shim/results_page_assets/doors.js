// Where a submission goes. The one module the job door plugs into: the page asks the shim
// (capabilities.json, read from its routes) whether it serves /v1/jobs, and submits there
// when it does, else to the synchronous /v1/diarize. Both doors take the same multipart
// form and resolve to `{result, job}`: the JSON /v1/diarize answers, and the job resource
// (null for a sync answer).
//
// The job door's contract (POST v1/jobs -> 202 + job resource; GET v1/jobs/{id};
// GET v1/jobs?limit=&cursor=; DELETE v1/jobs/{id}): a job resource is
// {id, status: queued|running|completed|failed|canceled, created_at, updated_at,
//  progress: {fraction, stage} while running, result when completed,
//  error: {code, message} when failed, links: {self, audio?}}.

import { ApiError } from "./api.js";

const API = "../v1/";
const POLL_FIRST_MS = 500;
const POLL_MAX_MS = 5000;

/** The door this shim offers. */
export function doorFor(api, capabilities) {
  return capabilities && capabilities.jobs ? new JobDoor(api) : new SyncDoor(api);
}

/** POST v1/diarize: the answer comes when the job is done, on the same connection. */
export class SyncDoor {
  constructor(api) {
    this.api = api;
    this.kind = "sync";
  }

  async submit(form, { onProgress = () => {}, signal } = {}) {
    const answer = await this.api.post(`${API}diarize`, form, { onProgress, signal });
    return { result: answer.body, job: null };
  }
}

/** POST v1/jobs, then GET v1/jobs/{id} until the job is completed, failed or canceled. */
export class JobDoor {
  constructor(api) {
    this.api = api;
    this.kind = "jobs";
  }

  async submit(form, { onProgress = () => {}, signal } = {}) {
    const answer = await this.api.post(`${API}jobs`, form, { onProgress, signal });
    return this.wait(answer.body, { onProgress, signal });
  }

  /** A job by id: its result when completed (waiting while it is queued or running). */
  async open(id, { onProgress = () => {}, signal } = {}) {
    return this.wait(await this.get(id), { onProgress, signal });
  }

  get(id) {
    return this.api.json(`${API}jobs/${encodeURIComponent(id)}`);
  }

  /** A page of jobs, newest first: `{jobs, next_cursor}`. */
  list({ limit = 20, cursor = null } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set("cursor", cursor);
    return this.api.json(`${API}jobs?${query}`);
  }

  cancel(id) {
    return this.api.json(`${API}jobs/${encodeURIComponent(id)}`, "DELETE");
  }

  /** Where the job's audio can be played from, or null: its link resolved against the job's own URL. */
  audioUrl(job) {
    const link = job && job.links && job.links.audio;
    return link ? new URL(link, new URL(`${API}jobs/${encodeURIComponent(job.id)}`, document.baseURI)).href : null;
  }

  async wait(job, { onProgress, signal }) {
    let delay = POLL_FIRST_MS;
    for (;;) {
      onProgress({ phase: job.status, fraction: job.progress ? job.progress.fraction : null, stage: job.progress ? job.progress.stage : "", job });
      if (job.status === "completed") return { result: job.result, job };
      if (job.status === "failed") {
        const error = job.error || {};
        throw new ApiError(200, error.code || "job_failed", error.message || `job ${job.id} failed`);
      }
      if (job.status === "canceled") throw new ApiError(200, "canceled", `job ${job.id} was canceled`);
      await sleep(delay, signal);
      delay = Math.min(delay * 1.5, POLL_MAX_MS);
      job = await this.get(job.id);
    }
  }
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) return reject(new ApiError(0, "canceled", "canceled"));
    const timer = setTimeout(resolve, ms);
    if (signal) {
      signal.addEventListener(
        "abort",
        () => {
          clearTimeout(timer);
          reject(new ApiError(0, "canceled", "stopped waiting (the job goes on; open it again by its id)"));
        },
        { once: true },
      );
    }
  });
}
