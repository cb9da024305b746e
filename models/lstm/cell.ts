/**
 * Hand-written LSTM inference for worker threads: one step per closed bucket, per-series state in
 * a Float32Array, no TensorFlow.js and no allocation per step. It matches tfjs-layers' LSTMCell:
 *
 *   z = x·W + h·U + b, split into gate blocks in the order i, f, c, o (each `units` wide)
 *   i = σr(z_i), f = σr(z_f), o = σr(z_o), c' = f·c + i·tanh(z_c), h' = o·tanh(c')
 *   forecast = h'·Wd + bd
 *
 * where σr is the layer's recurrent activation: tfjs' default `hardSigmoid` = clip(0.2·x + 0.5, 0, 1)
 * (Keras 2's hard_sigmoid), or the logistic `sigmoid`. Arithmetic is Float64; the state is stored
 * as Float32, like tfjs' tensors.
 */
import type { LstmWeights } from './weights.js';

export class LstmForecaster {
  readonly units: number;
  /** Length of the state array: h (units) then c (units). */
  readonly stateSize: number;
  private readonly hard: boolean;
  /**
   * Weights regrouped by unit for the step loop: for unit j, gate q (0 i, 1 f, 2 c, 3 o) the
   * recurrent column is `wh[(4j + q)·units + k]` (k = 0..units−1, contiguous), the input weight
   * `wx[4j + q]` and the bias `b[4j + q]`. One pass over h then yields all four gates of a unit
   * in registers, twice as fast as accumulating into a [4·units] scratch row by row.
   */
  private readonly wx: Float64Array;
  private readonly wh: Float64Array;
  private readonly b: Float64Array;
  private readonly wd: Float64Array;
  private readonly bd: number;
  /** h of the previous step: the loop overwrites the state's h while it still needs the old one. */
  private readonly hPrev: Float64Array;

  constructor(weights: LstmWeights) {
    const u = weights.units;
    const g = 4 * u;
    if (weights.kernel.length !== g || weights.recurrentKernel.length !== u * g || weights.bias.length !== g || weights.denseKernel.length !== u) {
      throw new RangeError(`LstmForecaster: weight lengths do not match units=${u}`);
    }
    this.units = u;
    this.stateSize = 2 * u;
    this.hard = weights.recurrentActivation === 'hardSigmoid';
    this.wx = new Float64Array(g);
    this.b = new Float64Array(g);
    this.wh = new Float64Array(u * g);
    for (let j = 0; j < u; j++) {
      for (let q = 0; q < 4; q++) {
        // Keras/tfjs column of unit j in gate block q.
        const col = q * u + j;
        this.wx[4 * j + q] = weights.kernel[col]!;
        this.b[4 * j + q] = weights.bias[col]!;
        for (let k = 0; k < u; k++) this.wh[(4 * j + q) * u + k] = weights.recurrentKernel[k * g + col]!;
      }
    }
    this.wd = Float64Array.from(weights.denseKernel);
    this.bd = weights.denseBias;
    this.hPrev = new Float64Array(u);
  }

  /** A zero state (h = 0, c = 0), what tfjs starts every predicted window from. */
  initState(): Float32Array {
    return new Float32Array(this.stateSize);
  }

  /**
   * Feeds `x` (a normalised bucket value), updates `state` in place and returns the forecast of
   * the next value. A non-finite `x` leaves the state untouched and returns NaN: one gap must not
   * poison a series' state for good.
   */
  step(state: Float32Array, x: number): number {
    if (!Number.isFinite(x)) return Number.NaN;
    const u = this.units;
    const { wx, wh, b, wd, hPrev, hard } = this;
    for (let k = 0; k < u; k++) hPrev[k] = state[k]!;
    let out = this.bd;
    for (let j = 0; j < u; j++) {
      const q = 4 * j;
      const ri = q * u;
      const rf = ri + u;
      const rc = rf + u;
      const ro = rc + u;
      let zi = b[q]! + x * wx[q]!;
      let zf = b[q + 1]! + x * wx[q + 1]!;
      let zc = b[q + 2]! + x * wx[q + 2]!;
      let zo = b[q + 3]! + x * wx[q + 3]!;
      for (let k = 0; k < u; k++) {
        const hk = hPrev[k]!;
        zi += hk * wh[ri + k]!;
        zf += hk * wh[rf + k]!;
        zc += hk * wh[rc + k]!;
        zo += hk * wh[ro + k]!;
      }
      const i = hard ? hardSigmoid(zi) : sigmoid(zi);
      const f = hard ? hardSigmoid(zf) : sigmoid(zf);
      const o = hard ? hardSigmoid(zo) : sigmoid(zo);
      // h and the forecast use the stored (Float32) c and h: exactly the state the next step sees.
      state[u + j] = f * state[u + j]! + i * Math.tanh(zc);
      state[j] = o * Math.tanh(state[u + j]!);
      out += state[j]! * wd[j]!;
    }
    return out;
  }

  /** Forecast after feeding `values` from a zero state: what tfjs' `model.predict` returns for that window. */
  forecastWindow(values: ArrayLike<number>): number {
    const state = this.initState();
    let y = Number.NaN;
    for (let t = 0; t < values.length; t++) y = this.step(state, values[t]!);
    return y;
  }
}

function hardSigmoid(x: number): number {
  const y = 0.2 * x + 0.5;
  return y <= 0 ? 0 : y >= 1 ? 1 : y;
}

function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}
