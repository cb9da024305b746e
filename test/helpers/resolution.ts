/**
 * The series' resolution as models/statistical.ts documents it, written out plainly for the
 * reference implementations of the detector tests: the first finite value's decimal step, then a
 * finer step once the share of recent values that need one (an average over 288 values,
 * forgetting by 1/288 a value) passes a tenth; it never coarsens.
 */
export class ReferenceResolution {
  quantum = Infinity;
  private share = 0;

  constructor(private readonly stepOf: (x: number) => number) {}

  see(x: number): void {
    if (!Number.isFinite(x)) return;
    const q = this.stepOf(x);
    if (this.quantum === Infinity) {
      this.quantum = q;
      return;
    }
    this.share = this.share * (1 - 1 / 288) + (q < this.quantum ? 1 / 288 : 0);
    if (this.share > 0.1) {
      this.quantum = q;
      this.share = 0;
    }
  }
}
