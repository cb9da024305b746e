/** A small dependency-free SVG line chart: one panel per series, shared time axis. */
export interface ChartSeries {
  label: string;
  unit: string;
  points: [number, number][];
}

export function lineChart(title: string, series: ChartSeries[], width = 720, panelHeight = 160): string {
  const margin = { left: 70, right: 20, top: 30, bottom: 30 };
  const height = margin.top + series.length * (panelHeight + margin.bottom) + 10;
  const allX = series.flatMap((s) => s.points.map(([x]) => x));
  const x0 = Math.min(...allX, 0);
  const x1 = Math.max(...allX, 1);
  const sx = (x: number) => margin.left + ((x - x0) / (x1 - x0 || 1)) * (width - margin.left - margin.right);
  const esc = (t: string) => t.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<text x="${margin.left}" y="18" font-size="13">${esc(title)}</text>`,
  ];
  series.forEach((s, i) => {
    const top = margin.top + i * (panelHeight + margin.bottom);
    const ys = s.points.map(([, y]) => y);
    const yMax = Math.max(...ys, 1);
    const sy = (y: number) => top + panelHeight - (y / yMax) * panelHeight;
    const path = s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
    parts.push(
      `<rect x="${margin.left}" y="${top}" width="${width - margin.left - margin.right}" height="${panelHeight}" fill="none" stroke="#ccc"/>`,
      `<text x="${margin.left + 4}" y="${top + 12}">${esc(`${s.label} (${s.unit})`)}</text>`,
      `<text x="${margin.left - 6}" y="${top + 10}" text-anchor="end">${Math.round(yMax).toLocaleString('en-US')}</text>`,
      `<text x="${margin.left - 6}" y="${top + panelHeight}" text-anchor="end">0</text>`,
      `<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="${path}"/>`,
      `<text x="${width - margin.right}" y="${top + panelHeight + 14}" text-anchor="end">${x1.toFixed(0)} s</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}
