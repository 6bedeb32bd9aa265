/**
 * One timer per period, shared by everything that polls at that period: 20 databases polled every
 * second wake the process once a second, not 20 times at 20 different instants. Timers are unref'd
 * (polling alone never keeps a process alive), as each caller's own timer was.
 */
interface Group {
  timer: NodeJS.Timeout;
  subscribers: Set<() => void>;
}

const groups = new Map<number, Group>();

/** Calls `fn` every `ms` milliseconds until the returned function is called. */
export function everyMs(ms: number, fn: () => void): () => void {
  let group = groups.get(ms);
  if (!group) {
    const subscribers = new Set<() => void>();
    const timer = setInterval(() => {
      for (const s of [...subscribers]) s();
    }, ms);
    timer.unref();
    group = { timer, subscribers };
    groups.set(ms, group);
  }
  // A wrapper, so that subscribing the same function twice makes two subscriptions.
  const entry = () => fn();
  group.subscribers.add(entry);
  const g = group;
  return () => {
    g.subscribers.delete(entry);
    if (g.subscribers.size === 0 && groups.get(ms) === g) {
      clearInterval(g.timer);
      groups.delete(ms);
    }
  };
}
