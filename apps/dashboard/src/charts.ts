/**
 * uPlot line charts coloured from the page's CSS variables, so they read well in the light and
 * the dark scheme; charts are rebuilt when the scheme changes. The number of points shown is
 * kept in the container's `data-points` attribute (tests and curious people read it).
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface LineSpec {
  label: string;
  /** A CSS custom property holding the colour, e.g. `--series-1`. */
  colour: string;
  dash?: number[];
  points?: boolean;
  width?: number;
}

export interface ChartSpec {
  /** What the chart shows, for screen readers. */
  title: string;
  xLabel: string;
  yLabel: string;
  height: number;
  lines: LineSpec[];
  xRange?: [number, number];
  yRange?: [number, number];
  legend?: boolean;
}

const charts = new Set<LineChart>();
const dark = window.matchMedia('(prefers-color-scheme: dark)');
dark.addEventListener('change', () => {
  for (const c of charts) c.rebuild();
});

const cssVar = (name: string) =>
  getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';

export class LineChart {
  private plot: uPlot | null = null;
  private data: number[][];
  private readonly resize: ResizeObserver;

  constructor(
    readonly el: HTMLElement,
    private readonly spec: ChartSpec,
    data: number[][] = [[], ...spec.lines.map(() => [])],
  ) {
    this.data = data;
    el.classList.add('chart');
    el.setAttribute('role', 'img');
    el.setAttribute('aria-label', spec.title);
    charts.add(this);
    this.rebuild();
    this.resize = new ResizeObserver(() => {
      const width = this.width();
      if (this.plot && Math.abs(this.plot.width - width) > 1)
        this.plot.setSize({ width, height: spec.height });
    });
    this.resize.observe(el);
  }

  get points(): number {
    return this.data[0]!.length;
  }

  get lastX(): number | undefined {
    return this.data[0]!.at(-1);
  }

  setData(data: number[][]): void {
    this.data = data;
    this.plot?.setData(data as uPlot.AlignedData);
    this.mark();
  }

  /** Append one x with a y per line (x must grow). */
  push(x: number, ys: number[]): void {
    const xs = this.data[0]!;
    if (xs.length > 0 && x <= xs[xs.length - 1]!) return;
    xs.push(x);
    ys.forEach((y, i) => {
      this.data[i + 1]!.push(y);
    });
    this.setData(this.data);
  }

  destroy(): void {
    charts.delete(this);
    this.resize.disconnect();
    this.plot?.destroy();
    this.plot = null;
  }

  /** (Re)create the plot with the current scheme's colours. */
  rebuild(): void {
    this.plot?.destroy();
    const fg = cssVar('--muted');
    const grid = cssVar('--grid');
    const font = '12px system-ui, sans-serif';
    const axis = (label: string): uPlot.Axis => ({
      label,
      stroke: fg,
      font,
      labelFont: font,
      labelSize: 18,
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1 },
    });
    const { spec } = this;
    this.plot = new uPlot(
      {
        width: this.width(),
        height: spec.height,
        legend: { show: spec.legend ?? false, live: false },
        cursor: { drag: { x: false, y: false } },
        scales: {
          x: { time: false, ...(spec.xRange ? { range: spec.xRange } : {}) },
          y: spec.yRange ? { range: spec.yRange } : {},
        },
        axes: [axis(spec.xLabel), axis(spec.yLabel)],
        series: [
          { label: spec.xLabel },
          ...spec.lines.map(
            (l): uPlot.Series => ({
              label: l.label,
              stroke: cssVar(l.colour),
              width: l.width ?? 2,
              ...(l.dash ? { dash: l.dash } : {}),
              points: { show: l.points ?? false, size: 6, fill: cssVar(l.colour) },
            }),
          ),
        ],
      },
      this.data as uPlot.AlignedData,
      this.el,
    );
    this.mark();
  }

  private width(): number {
    return Math.max(
      160,
      Math.floor(this.el.clientWidth || this.el.parentElement?.clientWidth || 320),
    );
  }

  private mark(): void {
    this.el.dataset.points = String(this.points);
  }
}
