// Promise helpers shared by tests.

/** settled tells, after the microtasks queued so far ran, whether `promise` settled (undefined counts as settled). */
export async function settled(promise: Promise<void> | undefined): Promise<boolean> {
  if (promise === undefined) return true
  let done = false
  promise.then(() => (done = true), () => (done = true))
  for (let i = 0; i < 10; i++) await Promise.resolve()
  return done
}
