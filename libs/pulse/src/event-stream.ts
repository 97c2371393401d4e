// A client for the queue's HTTP event stream (GET <rootUrl>/api/queue/v1/events), for listeners
// that have no RabbitMQ: it follows the stream, reconnects with Last-Event-ID after a drop (so it
// misses nothing the outbox still holds), and hands over decoded events.
import { backoffDelay, sleep, type BackoffOptions } from './backoff.js';
import type { ExchangeName, MessageTypes } from './bindings.js';

export interface StreamEvent<E extends ExchangeName = ExchangeName> {
  /** The outbox id: the SSE event id and the AMQP messageId. */
  messageId: string;
  exchange: string;
  routingKey: string;
  routes: string[];
  created: string;
  payload: MessageTypes[E];
}

export interface EventStreamOptions {
  rootUrl: string;
  /** Exchanges, short (`task-completed`) or full names; all when empty. */
  exchanges?: string[];
  /** AMQP topic patterns over the routing key and CC routes; `#` when empty. */
  routingKeyPatterns?: string[];
  /** Resume after this event id. */
  lastEventId?: string;
  onEvent: (event: StreamEvent) => void | Promise<void>;
  /** Called on each (re)connection, once the server is streaming. */
  onOpen?: () => void;
  /** Told about each (re)connection failure; the stream keeps retrying until stopped. */
  onError?: (err: Error) => void;
  backoff?: BackoffOptions;
}

export function eventStreamUrl(opts: Pick<EventStreamOptions, 'rootUrl' | 'exchanges' | 'routingKeyPatterns'>): string {
  const u = new URL(`${opts.rootUrl.replace(/\/+$/, '')}/api/queue/v1/events`);
  for (const e of opts.exchanges ?? []) u.searchParams.append('exchange', e);
  for (const p of opts.routingKeyPatterns ?? []) u.searchParams.append('routingKeyPattern', p);
  return u.toString();
}

/** Parses SSE text; returns the unparsed remainder. */
export function parseSse(buffer: string, onMessage: (id: string | undefined, data: string) => void): string {
  let idx: number;
  while ((idx = buffer.indexOf('\n\n')) >= 0) {
    const block = buffer.slice(0, idx);
    buffer = buffer.slice(idx + 2);
    let id: string | undefined;
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'id') id = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length) onMessage(id, data.join('\n'));
  }
  return buffer;
}

/** Follows the stream until the returned stop() is called. */
export function followEventStream(opts: EventStreamOptions): { stop(): Promise<void>; lastEventId(): string | undefined } {
  const abort = new AbortController();
  let last = opts.lastEventId;
  const url = eventStreamUrl(opts);
  const run = async () => {
    for (let attempt = 1; !abort.signal.aborted; attempt++) {
      try {
        const res = await fetch(url, {
          headers: { accept: 'text/event-stream', ...(last ? { 'last-event-id': last } : {}) },
          signal: abort.signal,
        });
        if (res.status !== 200 || !res.body) throw new Error(`event stream answered ${res.status}: ${await res.text()}`);
        attempt = 0;
        opts.onOpen?.();
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          const events: StreamEvent[] = [];
          buffer = parseSse(buffer + decoder.decode(value, { stream: true }), (_id, data) => events.push(JSON.parse(data) as StreamEvent));
          for (const e of events) {
            await opts.onEvent(e);
            last = e.messageId;
          }
        }
        throw new Error('event stream ended');
      } catch (err) {
        if (abort.signal.aborted) return;
        opts.onError?.(err as Error);
        await sleep(backoffDelay(Math.max(1, attempt), opts.backoff), abort.signal);
      }
    }
  };
  const done = run();
  return {
    lastEventId: () => last,
    async stop() {
      abort.abort();
      await done;
    },
  };
}
