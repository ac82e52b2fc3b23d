/**
 * Seeded, deterministic randomness (mulberry32 + Box-Muller) where a run must be repeatable: the
 * trainer's initial LoRA weights and data shuffling, the random models and adapters of src/testing,
 * and the drivers' workloads (benchmarks, fuzzer). Never for anything secret.
 */
export function rng(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(next() + 1e-12)) * Math.cos(2 * Math.PI * next());
  return {
    next,
    normal,
    tensor(n: number, std: number): Float32Array {
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = normal() * std;
      return a;
    },
  };
}
