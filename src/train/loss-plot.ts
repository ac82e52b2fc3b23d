/** A small self-contained SVG of training and validation loss per step. */
export function lossPlotSvg(
  train: Array<{ step: number; loss: number }>,
  val: Array<{ step: number; loss: number }>,
  title: string,
): string {
  const W = 640,
    H = 360,
    L = 56,
    R = 16,
    T = 32,
    B = 40;
  const all = [...train, ...val];
  const maxStep = Math.max(1, ...all.map((p) => p.step));
  const lo = Math.min(...all.map((p) => p.loss));
  const hi = Math.max(...all.map((p) => p.loss));
  const span = hi - lo || 1;
  const x = (s: number) => L + ((W - L - R) * s) / maxStep;
  const y = (v: number) => T + ((H - T - B) * (hi - v)) / span;
  const path = (pts: Array<{ step: number; loss: number }>) =>
    pts.map((p, i) => `${i ? 'L' : 'M'}${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join(' ');
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => lo + f * span);
  const esc = (s: string) => s.replace(/[<>&]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;' })[c]!);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>
${ticks.map((v) => `<line x1="${L}" x2="${W - R}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#eee"/><text x="${L - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v.toFixed(2)}</text>`).join('\n')}
<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>
<text x="${W / 2}" y="${H - 8}" text-anchor="middle">step (of ${maxStep})</text>
<path d="${path(train)}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>
${val.length ? `<path d="${path(val)}" fill="none" stroke="#d62728" stroke-width="2"/>${val.map((p) => `<circle cx="${x(p.step).toFixed(1)}" cy="${y(p.loss).toFixed(1)}" r="3" fill="#d62728"/>`).join('')}` : ''}
<text x="${W - R - 120}" y="${T + 12}" fill="#1f77b4">— train loss</text><text x="${W - R - 120}" y="${T + 28}" fill="#d62728">— validation loss</text>
</svg>
`;
}
