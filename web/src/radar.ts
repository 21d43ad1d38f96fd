/** The expert's radar chart (R-RAT-02) as inline SVG, with the same figures in a table for screen readers. */
import { h } from "./dom";

const NS = "http://www.w3.org/2000/svg";

function svg(tag: string, attrs: Record<string, string | number>): SVGElement {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

export function radarChart(radar: { axes: string[]; averages: Record<string, number> }, label: (axis: string) => string): HTMLElement {
  const size = 420, c = size / 2, r = 110, n = radar.axes.length;  // room around the chart for the axis labels
  const point = (i: number, v: number) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / n;
    return [c + Math.cos(a) * r * (v / 5), c + Math.sin(a) * r * (v / 5)];
  };
  const chart = svg("svg", { viewBox: `0 0 ${size} ${size}`, width: "100%", class: "radar", "aria-hidden": "true", focusable: "false" });
  for (const level of [1, 2, 3, 4, 5]) {
    chart.append(svg("polygon", { points: radar.axes.map((_, i) => point(i, level).join(",")).join(" "), class: "grid" }));
  }
  radar.axes.forEach((axis, i) => {
    const [x, y] = point(i, 5), [lx, ly] = point(i, 6.1);
    chart.append(svg("line", { x1: c, y1: c, x2: x, y2: y, class: "grid" }));
    const text = svg("text", { x: lx, y: ly, "text-anchor": "middle", "dominant-baseline": "middle", class: "axis" });
    text.textContent = label(axis);
    chart.append(text);
  });
  chart.append(svg("polygon", { points: radar.axes.map((a, i) => point(i, radar.averages[a] ?? 0).join(",")).join(" "), class: "value" }));
  const table = h("table", { class: "radar-table" },
    h("caption", {}, "1–5"),
    h("tbody", {}, ...radar.axes.map((a) => h("tr", {}, h("th", { scope: "row" }, label(a)),
      h("td", { "data-axis": a }, (radar.averages[a] ?? 0).toFixed(1))))));
  return h("figure", { class: "radar-figure" }, chart as unknown as HTMLElement, table);
}
