// Task priorities, highest first. The pending table stores the number so ORDER BY is an index scan.
export const priorities = ['highest', 'very-high', 'high', 'medium', 'low', 'very-low', 'lowest'] as const;
export type Priority = (typeof priorities)[number];

export function priorityNumber(p: string): number {
  const i = priorities.indexOf(p as Priority);
  if (i < 0) throw new Error(`unknown priority ${p}`);
  return priorities.length - i;
}

/** The priorities at or above `p`, highest first: a create-task scope for any of them suffices. */
export function prioritiesAtOrAbove(p: string): string[] {
  const i = priorities.indexOf(p as Priority);
  return priorities.slice(0, i + 1);
}
