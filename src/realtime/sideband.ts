import type { FastifyBaseLogger } from 'fastify';
import { WebSocket } from 'undici';
import { safeIdentifier } from '../redact.js';

/** What the service set on a call and the session lock keeps: the persona and the answer length. */
export interface LockedSession {
  instructions: string;
  max_output_tokens: number | 'inf';
}

/** What a sideband tells the call manager. */
export interface SidebandListener {
  /** A `response.done` arrived: its `response.usage` as sent (unchecked beyond being an object), priced for `model`. */
  usage(usage: unknown, model: string): void;
  /** Not open `openTimeoutMs` after it was wanted (first open, or after a drop). Keeps trying until closed. */
  lost(): void;
}

export type SidebandEvent = 'opened' | 'failed' | 'reopened';

export interface SidebandSettings {
  /** OPENAI_BASE_URL, e.g. https://api.openai.com/v1. */
  baseUrl: string;
  /** The server key: a sideband never carries an ephemeral secret. */
  apiKey: string;
  /** LOCK_SESSION: restore instructions and max_output_tokens the page changed. */
  lockSession: boolean;
  /** How long a sideband may take to open (or reopen) before the call counts as unwatched. */
  openTimeoutMs: number;
  log: FastifyBaseLogger;
  /** Counted in /metrics (realtime_sideband_total{event}). */
  onEvent?: (event: SidebandEvent) => void;
  /** Counted in /metrics (realtime_session_lock_corrections_total). */
  onCorrection?: () => void;
}

/** SPEC: a sideband not open (or reopened) within 5 s leaves the call unwatched; under a cap it is hung up. */
export const SIDEBAND_OPEN_TIMEOUT_MS = 5_000;
/** Waits between attempts to (re)open: quick at first (the 5 s window allows several), then slower. */
const RETRY_BASE_MS = 250;
const RETRY_CAP_MS = 30_000;
/** At most one correction per this long per call: a page sending updates in a burst gets one answer, last. */
const MIN_CORRECTION_GAP_MS = 200;
/** Corrections on one call logged line by line; past this they are counted only. */
const LOGGED_CORRECTIONS = 10;
/** Corrections sent with no matching session seen since: OpenAI is not taking them (logged once). */
const CORRECTIONS_BEFORE_ALARM = 10;

/** The server-side WebSocket of a call: OPENAI_BASE_URL as ws(s) plus /realtime?call_id=<id>. */
export function sidebandUrl(baseUrl: string, callId: string): string {
  const url = new URL(`${baseUrl.replace(/\/+$/, '')}/realtime`);
  url.protocol = url.protocol === 'http:' ? 'ws:' : 'wss:';
  url.searchParams.set('call_id', callId);
  return url.toString();
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

const COUNT_PATHS = [
  ['total_tokens'],
  ['input_tokens'],
  ['output_tokens'],
  ['input_token_details', 'text_tokens'],
  ['input_token_details', 'audio_tokens'],
  ['input_token_details', 'image_tokens'],
  ['input_token_details', 'cached_tokens'],
  ['input_token_details', 'cached_tokens_details', 'text_tokens'],
  ['input_token_details', 'cached_tokens_details', 'audio_tokens'],
  ['input_token_details', 'cached_tokens_details', 'image_tokens'],
  ['output_token_details', 'text_tokens'],
  ['output_token_details', 'audio_tokens'],
] as const;

/** Every token count present is a whole number >= 0 (the pricing decides what to do with the rest). */
function countsLookSound(usage: Record<string, unknown>): boolean {
  for (const path of COUNT_PATHS) {
    let node: unknown = usage;
    for (const key of path) node = isRecord(node) ? node[key] : undefined;
    if (node !== undefined && !(typeof node === 'number' && Number.isSafeInteger(node) && node >= 0)) return false;
  }
  return true;
}

/** Every open sideband of this process, and the settings they share. */
export class Sidebands {
  private open = 0;

  constructor(readonly settings: SidebandSettings) {}

  /** Sidebands open now (realtime_sideband_open). */
  get openCount(): number {
    return this.open;
  }

  /** Starts watching a call: opens its sideband now and keeps it open until close(). */
  watch(callId: string, model: string, locked: LockedSession, listener: SidebandListener): Sideband {
    return new Sideband(this, callId, model, locked, listener);
  }

  /** @internal */
  changed(delta: 1 | -1): void {
    this.open += delta;
  }
}

/**
 * One call's sideband. Reads every server event, hands each `response.done` usage on, restores the
 * locked session fields the page changed, and reopens while wanted. Nothing OpenAI (or anything on
 * the path) sends can throw out of here: a bad event is logged once per call and kind, then ignored.
 */
export class Sideband {
  private socket: WebSocket | undefined;
  private isOpen = false;
  private wanted = true;
  /** The call is being hung up: events are still read, a close is no longer a drop to repair. */
  private ending = false;
  private everOpened = false;
  private attempts = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private attemptTimer: NodeJS.Timeout | undefined;
  private outageTimer: NodeJS.Timeout | undefined;
  private correctionsSinceMatch = 0;
  private correctionsSent = 0;
  private lastCorrectionAt = Number.NEGATIVE_INFINITY;
  private correctionTimer: NodeJS.Timeout | undefined;
  private readonly problemsLogged = new Set<string>();
  private readonly log: FastifyBaseLogger;

  constructor(
    private readonly hub: Sidebands,
    readonly callId: string,
    private readonly model: string,
    private readonly locked: LockedSession,
    private readonly listener: SidebandListener,
  ) {
    this.log = hub.settings.log;
    this.startOutage();
    this.connect();
  }

  /** Open right now. */
  get open(): boolean {
    return this.isOpen;
  }

  /** Corrections sent on this call (session lock). */
  get corrections(): number {
    return this.correctionsSent;
  }

  /** The call is being hung up: OpenAI will close the socket, which must not be reopened or mourned. */
  finishing(): void {
    this.ending = true;
    clearTimeout(this.outageTimer);
    clearTimeout(this.retryTimer);
  }

  /** For good: the call is over (or this process stops watching it). */
  close(): void {
    if (!this.wanted) return;
    this.wanted = false;
    clearTimeout(this.retryTimer);
    clearTimeout(this.attemptTimer);
    clearTimeout(this.outageTimer);
    clearTimeout(this.correctionTimer);
    this.markClosed();
    const socket = this.socket;
    this.socket = undefined;
    try {
      socket?.close(1000);
    } catch {
      // Closing a socket that is failing anyway: nothing to do.
    }
  }

  private connect(): void {
    if (!this.wanted || this.ending) return;
    const { baseUrl, apiKey, openTimeoutMs } = this.hub.settings;
    let socket: WebSocket;
    try {
      socket = new WebSocket(sidebandUrl(baseUrl, this.callId), { headers: { authorization: `Bearer ${apiKey}` } });
    } catch (error) {
      this.problem('connect', { err_kind: (error as Error).name });
      this.retry();
      return;
    }
    this.socket = socket;
    // A handshake that never finishes (no answer to the upgrade) is given up like a refused one.
    this.attemptTimer = setTimeout(() => {
      if (this.socket === socket && !this.isOpen) this.abandon(socket);
    }, openTimeoutMs);
    this.attemptTimer.unref();
    socket.addEventListener('open', () => {
      if (this.socket !== socket) return;
      clearTimeout(this.attemptTimer);
      this.opened();
    });
    socket.addEventListener('message', (event) => {
      if (this.socket === socket) this.receive(event.data);
    });
    // 'error' is always followed by 'close', where the reconnection happens.
    socket.addEventListener('error', () => undefined);
    socket.addEventListener('close', (event) => {
      if (this.socket !== socket) return;
      clearTimeout(this.attemptTimer);
      this.socket = undefined;
      const wasOpen = this.isOpen;
      this.markClosed();
      if (!this.wanted || this.ending) return;
      if (wasOpen) {
        this.log.warn({ call_id: this.callId, close_code: event.code }, 'sideband dropped, reopening');
        this.attempts = 0;
        this.startOutage();
        this.connect();
      } else {
        this.retry();
      }
    });
  }

  private abandon(socket: WebSocket): void {
    try {
      socket.close();
    } catch {
      // The close event, or the next attempt, follows in any case.
    }
    // undici fires 'close' for a socket closed while connecting; if it did not, move on anyway.
    if (this.socket === socket) {
      this.socket = undefined;
      this.retry();
    }
  }

  private retry(): void {
    if (!this.wanted) return;
    const wait = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** this.attempts);
    this.attempts += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), wait);
    this.retryTimer.unref();
  }

  private opened(): void {
    this.isOpen = true;
    this.hub.changed(1);
    clearTimeout(this.outageTimer);
    this.outageTimer = undefined;
    this.attempts = 0;
    const reopened = this.everOpened;
    this.everOpened = true;
    this.hub.settings.onEvent?.(reopened ? 'reopened' : 'opened');
    this.log.debug({ call_id: this.callId }, reopened ? 'sideband reopened' : 'sideband opened');
  }

  private markClosed(): void {
    if (!this.isOpen) return;
    this.isOpen = false;
    this.hub.changed(-1);
  }

  /** The sideband is wanted and not open: if that lasts `openTimeoutMs`, the call counts as unwatched. */
  private startOutage(): void {
    clearTimeout(this.outageTimer);
    this.outageTimer = setTimeout(() => {
      this.outageTimer = undefined;
      if (!this.wanted || this.ending || this.isOpen) return;
      this.hub.settings.onEvent?.('failed');
      this.log.warn({ call_id: this.callId, open_timeout_ms: this.hub.settings.openTimeoutMs }, 'sideband could not be opened');
      try {
        this.listener.lost();
      } catch (error) {
        this.log.error({ err: error, call_id: this.callId }, 'sideband: the call manager failed on a lost sideband');
      }
    }, this.hub.settings.openTimeoutMs);
    this.outageTimer.unref();
  }

  /** One server event, as received: anything may arrive here. */
  private receive(data: unknown): void {
    if (typeof data !== 'string') return this.problem('binary frame');
    let event: unknown;
    try {
      event = JSON.parse(data);
    } catch {
      return this.problem('not JSON');
    }
    if (!isRecord(event) || typeof event.type !== 'string') return this.problem('no event type');
    switch (event.type) {
      case 'response.done':
        return this.responseDone(event);
      case 'session.created':
      case 'session.updated':
        return this.sessionSeen(event.session);
      case 'error': {
        // OpenAI's own message may quote what was sent (instructions): type and code only, and
        // those only as identifiers (an echoed key is no identifier, issue 16).
        const error = isRecord(event.error) ? event.error : {};
        return this.problem('error event', { error_type: safeIdentifier(error.type), error_code: safeIdentifier(error.code) });
      }
      default:
        return undefined;
    }
  }

  private responseDone(event: Record<string, unknown>): void {
    const usage = isRecord(event.response) ? event.response.usage : undefined;
    if (!isRecord(usage)) return this.problem('response.done without usage');
    if (!countsLookSound(usage)) this.problem('usage with invalid token counts');
    try {
      this.listener.usage(usage, this.model);
    } catch (error) {
      this.log.error({ err: error, call_id: this.callId }, 'sideband: the call manager failed on a usage');
    }
  }

  /** session.created / session.updated: what OpenAI now holds. Fields it does not show are not judged. */
  private sessionSeen(session: unknown): void {
    if (!this.hub.settings.lockSession || !isRecord(session)) return;
    const changed: string[] = [];
    if ('instructions' in session && session.instructions !== this.locked.instructions) changed.push('instructions');
    if ('max_output_tokens' in session && session.max_output_tokens !== this.locked.max_output_tokens) changed.push('max_output_tokens');
    if (changed.length === 0) {
      this.correctionsSinceMatch = 0;
      return;
    }
    // Never given up, only paced: the last word on the session is always the service's.
    const wait = this.lastCorrectionAt + MIN_CORRECTION_GAP_MS - performance.now();
    if (wait <= 0) return this.correct(changed);
    this.correctionTimer ??= setTimeout(() => {
      this.correctionTimer = undefined;
      this.correct(changed);
    }, wait);
    this.correctionTimer.unref();
  }

  /** Sends the locked fields back (idempotent: restoring twice is harmless). */
  private correct(changed: string[]): void {
    // Not open: the reopened sideband's session.created shows the session again, and is judged then.
    if (!this.isOpen) return;
    this.lastCorrectionAt = performance.now();
    this.correctionsSent += 1;
    this.correctionsSinceMatch += 1;
    if (this.correctionsSinceMatch === CORRECTIONS_BEFORE_ALARM) this.problem('session lock not taken', { changed });
    this.send({
      type: 'session.update',
      event_id: `lock_${this.correctionsSent}`,
      session: { type: 'realtime', instructions: this.locked.instructions, max_output_tokens: this.locked.max_output_tokens },
    });
    this.hub.settings.onCorrection?.();
    // Never the instructions themselves: only which fields were put back.
    if (this.correctionsSent <= LOGGED_CORRECTIONS) {
      this.log.warn({ call_id: this.callId, changed, correction: this.correctionsSent }, 'session lock: the page changed the session, restored');
    } else if (this.correctionsSent === LOGGED_CORRECTIONS + 1) {
      this.log.warn({ call_id: this.callId }, 'session lock: further corrections on this call are counted, not logged');
    }
  }

  private send(event: object): void {
    try {
      this.socket?.send(JSON.stringify(event));
    } catch (error) {
      this.problem('send failed', { err_kind: (error as Error).name });
    }
  }

  /** Logged once per call and kind: a stream of garbage is one line, not a flood. */
  private problem(kind: string, fields: Record<string, unknown> = {}): void {
    if (this.problemsLogged.has(kind)) return;
    this.problemsLogged.add(kind);
    this.log.warn({ call_id: this.callId, problem: kind, ...fields }, 'sideband problem');
  }
}
