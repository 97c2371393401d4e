// AMQP topic-binding semantics outside the broker, for the HTTP event stream and its tests: `*`
// matches exactly one word, `#` zero or more. A message matches a binding when its primary routing
// key or any of its CC keys (`route.<r>`) matches, as RabbitMQ's sender-selected distribution does.

export type TopicMatcher = (routingKey: string) => boolean;

/** Compiles a binding pattern into a matcher; patterns are reused for every message. */
export function topicMatcher(pattern: string): TopicMatcher {
  if (pattern === '#') return () => true;
  const words = pattern.split('.');
  if (!words.includes('#')) {
    // the common case: fixed word count, compare word by word
    return (key) => {
      const k = key.split('.');
      if (k.length !== words.length) return false;
      for (let i = 0; i < words.length; i++) if (words[i] !== '*' && words[i] !== k[i]) return false;
      return true;
    };
  }
  return (key) => matchFrom(words, 0, key.split('.'), 0);
}

function matchFrom(p: string[], i: number, k: string[], j: number): boolean {
  while (i < p.length) {
    const w = p[i]!;
    if (w === '#') {
      // collapse consecutive #s, then try every split point
      while (i + 1 < p.length && p[i + 1] === '#') i++;
      if (i === p.length - 1) return true;
      for (let s = j; s <= k.length; s++) if (matchFrom(p, i + 1, k, s)) return true;
      return false;
    }
    if (j >= k.length) return false;
    if (w !== '*' && w !== k[j]) return false;
    i++;
    j++;
  }
  return j === k.length;
}

export function topicMatches(pattern: string, routingKey: string): boolean {
  return topicMatcher(pattern)(routingKey);
}
