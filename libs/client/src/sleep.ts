// A wait that a signal can cut short, for retry back-offs. The signal is usually long-lived (a
// worker's whole polling loop), so the wait takes its abort listener off again when it ends by
// itself: otherwise every back-off of a long outage would leave one behind.
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
