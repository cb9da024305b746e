/** Rows of cells as a plain text table: columns padded to their widest cell, two spaces apart, the header first. */
export function textTable(header: readonly string[], body: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd();
  return [line(header), ...body.map(line)].join('\n') + '\n';
}
