/**
 * How the summary compares loraserve with llama.cpp on one workload, from each side's tokens/s per
 * precision: at equal precision (our fastest precision against the peer's matching weight type) and
 * best against best (each side's fastest setting, as a user would pick it).
 */

/** The precision with the highest figure (the first of equals), or null when there is none. */
export function bestPrecision(figures: Readonly<Record<string, number>>): { precision: string; value: number } | null {
  let best: { precision: string; value: number } | null = null;
  for (const [precision, value] of Object.entries(figures)) if (!best || value > best.value) best = { precision, value };
  return best;
}

const ratio = (a: number, b: number) => +(a / b).toFixed(3);

/** Our fastest precision's figure ÷ the peer's at the weight type `peerOf` matches it with; null without that figure. */
export function equalPrecisionRatio(
  ours: Readonly<Record<string, number>>,
  peer: Readonly<Record<string, number>>,
  peerOf: Readonly<Record<string, string>>,
): number | null {
  const best = bestPrecision(ours);
  const against = best ? peer[peerOf[best.precision] ?? ''] : undefined;
  return best && against ? ratio(best.value, against) : null;
}

/** Our fastest precision's figure ÷ the peer's fastest weight type's; null when either side has none. */
export function bestRatio(ours: Readonly<Record<string, number>>, peer: Readonly<Record<string, number>>): number | null {
  const [a, b] = [bestPrecision(ours), bestPrecision(peer)];
  return a && b && b.value > 0 ? ratio(a.value, b.value) : null;
}
