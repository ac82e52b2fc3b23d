/** A one-line progress bar on a TTY; plain log lines otherwise (CI, pipes). */
export class Progress {
  private readonly tty = Boolean(process.stderr.isTTY);
  private lastLine = 0;

  constructor(
    private readonly label: string,
    private readonly total: number,
  ) {}

  update(done: number, detail = ''): void {
    if (this.tty) {
      const width = 24;
      const filled = Math.round((done / this.total) * width);
      process.stderr.write(`\r${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${this.total} ${detail}\x1b[K`);
      if (done >= this.total) process.stderr.write('\n');
    } else if (done >= this.total || Date.now() - this.lastLine > 5000) {
      this.lastLine = Date.now();
      process.stderr.write(`${this.label}: ${done}/${this.total} ${detail}\n`);
    }
  }
}
