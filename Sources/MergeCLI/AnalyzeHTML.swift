import Foundation
import MergeModel
import MergeRuntime

/// `merge analyze --html`: the report as one self-contained page.
///
/// Inline SVG and CSS only (no scripts, no fonts or files from elsewhere), so the page opens
/// offline and can be attached to a pull request. Four plots, each an `<svg class="plot">`
/// inside a `<figure>` with an `id`: `norms` (‖τ‖ per layer), `cosine` (the whole-model cosine
/// heat map), `conflicts` (the sign-conflict rate per layer) and `sparsity` (per layer, the
/// share of ‖τ‖² in the largest 1% and 10% of entries, and the share of entries changed).
enum AnalyzeHTML {
  /// Line colours, one per fine-tune (cycled past eight).
  static let palette = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
  ]

  static func color(_ i: Int) -> String { palette[i % palette.count] }

  static func page(_ r: InterferenceReport) -> String {
    let layers = r.layerFigures
    let xs = layers.map(\.layer)
    var body = "<h1>Task-vector analysis</h1>\n"
    body += "<p>Base <code>\(escape(r.base))</code>; τ = fine-tune − base for:</p>\n<ul>\n"
    for (i, m) in r.models.enumerated() {
      let norm = r.normSquared[i].squareRoot()
      let outside = r.normSquared[i] > 0 ? 100 * r.outsideSquared[i] / r.normSquared[i] : 0
      body +=
        "<li><span class=\"key\" style=\"background:\(color(i))\"></span>[\(i)] <code>\(escape(m))</code>: ‖τ‖ \(number(norm)), \(number(outside))% of ‖τ‖² outside the direction of the shared component (the mean τ)</li>\n"
    }
    body += "</ul>\n"
    let overlap = r.keptAny > 0 ? 100 * Double(r.keptShared) / Double(r.keptAny) : 0
    let left = r.keptShared > 0 ? 100 * Double(r.keptConflicting) / Double(r.keptShared) : 0
    body +=
      "<p>Sign conflicts: \(number(100 * r.whole.conflictRate))% of the entries two or more τ change. After TIES trimming at density \(number(r.density)): \(number(overlap))% of kept entries are kept by two or more τ, and \(number(left))% of those conflict.</p>\n"
    let perLayer: (String, String, String) -> String = { id, title, chart in
      "<figure id=\"\(id)\"><figcaption>\(title)</figcaption>\n\(chart)</figure>\n"
    }
    if xs.isEmpty {
      body += "<p>No tensor belongs to a numbered layer: the per-layer plots are left out.</p>\n"
    }
    body += perLayer(
      "norms", "‖τ‖ per layer (L2 norm over the layer's tensors)",
      LineChart(
        xLabel: "layer", yLabel: "‖τ‖", xs: xs,
        series: r.models.indices.map { i in
          .init(name: "[\(i)]", values: layers.map { $0.norm[i] }, color: color(i))
        }
      ).svg)
    body +=
      "<figure id=\"cosine\"><figcaption>Cosine similarity of the task vectors (whole model)</figcaption>\n\(heatMap(r.whole.cosine))</figure>\n"
    body += perLayer(
      "conflicts", "Sign conflicts per layer (% of the entries two or more τ change)",
      LineChart(
        xLabel: "layer", yLabel: "conflicts (%)", xs: xs,
        series: [
          .init(
            name: "all τ", values: layers.map { 100 * $0.sums.conflictRate }, color: "#333333")
        ], percent: true
      ).svg)
    body += perLayer(
      "sparsity",
      "Sparsity per layer: share of ‖τ‖² in each tensor's largest 1% (solid) and 10% (dashed) of entries, and share of entries changed (dotted)",
      LineChart(
        xLabel: "layer", yLabel: "share (%)", xs: xs,
        series: r.models.indices.flatMap { i -> [LineChart.Series] in
          [
            .init(name: "[\(i)] top 1%", values: layers.map { 100 * $0.top1[i] }, color: color(i)),
            .init(
              name: "[\(i)] top 10%", values: layers.map { 100 * $0.top10[i] }, color: color(i),
              dash: "6 3"),
            .init(
              name: "[\(i)] changed", values: layers.map { 100 * $0.changed[i] }, color: color(i),
              dash: "1 3"),
          ]
        }, percent: true
      ).svg)
    return """
      <!DOCTYPE html>
      <html lang="en">
      <head>
      <meta charset="utf-8">
      <title>merge analyze: \(escape(r.base))</title>
      <style>
      body { font-family: sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }
      figure { margin: 2rem 0; }
      figcaption { font-weight: bold; margin-bottom: 0.5rem; }
      code { font-size: 0.9em; }
      .key { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.4em; }
      svg text { font-family: sans-serif; font-size: 12px; fill: #222; }
      </style>
      </head>
      <body>
      \(body)<p>Written by \(escape(Tool.description)) (<code>merge analyze --html</code>).</p>
      </body>
      </html>

      """
  }

  /// The cosine matrix as coloured cells (blue −1, white 0, red +1) with their values.
  static func heatMap(_ m: [[Double]]) -> String {
    let n = m.count
    let cell = n <= 8 ? 56 : max(12, 448 / max(1, n))
    let margin = 48
    let size = margin + n * cell + 8
    var svg =
      "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(size + 90)\" height=\"\(size)\" viewBox=\"0 0 \(size + 90) \(size)\" role=\"img\">\n"
    for i in 0..<n {
      for j in 0..<n {
        let v = m[i][j].isFinite ? max(-1, min(1, m[i][j])) : 0
        let x = margin + j * cell
        let y = margin + i * cell
        svg +=
          "<rect class=\"mark\" x=\"\(x)\" y=\"\(y)\" width=\"\(cell)\" height=\"\(cell)\" fill=\"\(diverging(v))\" stroke=\"#fff\"><title>[\(i)]·[\(j)]: \(number(m[i][j]))</title></rect>\n"
        if cell >= 40 {
          let shown = String(format: "%.2f", abs(m[i][j]) < 0.005 ? 0 : m[i][j])
          let ink = abs(v) > 0.6 ? " style=\"fill:#fff\"" : ""
          svg +=
            "<text x=\"\(x + cell / 2)\" y=\"\(y + cell / 2 + 4)\" text-anchor=\"middle\"\(ink)>\(shown)</text>\n"
        }
      }
      svg +=
        "<text x=\"\(margin - 6)\" y=\"\(margin + i * cell + cell / 2 + 4)\" text-anchor=\"end\">[\(i)]</text>\n"
      svg +=
        "<text x=\"\(margin + i * cell + cell / 2)\" y=\"\(margin - 8)\" text-anchor=\"middle\">[\(i)]</text>\n"
    }
    // The colour scale.
    let scaleX = margin + n * cell + 24
    let scaleHeight = n * cell
    for k in 0..<20 {
      let v = 1 - 2 * (Double(k) + 0.5) / 20
      svg +=
        "<rect x=\"\(scaleX)\" y=\"\(margin + k * scaleHeight / 20)\" width=\"14\" height=\"\(scaleHeight / 20 + 1)\" fill=\"\(diverging(v))\"/>\n"
    }
    svg += "<text x=\"\(scaleX + 20)\" y=\"\(margin + 10)\">+1</text>\n"
    svg += "<text x=\"\(scaleX + 20)\" y=\"\(margin + scaleHeight / 2 + 4)\">0</text>\n"
    svg += "<text x=\"\(scaleX + 20)\" y=\"\(margin + scaleHeight)\">−1</text>\n"
    svg += "<text x=\"\(scaleX - 4)\" y=\"\(margin - 8)\">cosine</text>\n"
    return svg + "</svg>\n"
  }

  /// Blue (−1) through white (0) to red (+1).
  static func diverging(_ v: Double) -> String {
    let t = abs(v)
    let fade = Int((255 * (1 - t)).rounded())
    let (r, g, b) = v >= 0 ? (255, fade, fade) : (fade, fade, 255)
    return String(format: "#%02x%02x%02x", r, g, b)
  }

  static func number(_ v: Double) -> String {
    guard v.isFinite else { return v.isNaN ? "NaN" : (v > 0 ? "∞" : "−∞") }
    if v != 0 && (abs(v) < 0.01 || abs(v) >= 1e5) { return String(format: "%.3g", v) }
    return String(format: "%.2f", v)
  }

  /// Text for HTML: `&`, `<`, `>`, `"` and `'` as entities.
  static func escape(_ s: String) -> String {
    var out = ""
    for c in s {
      switch c {
      case "&": out += "&amp;"
      case "<": out += "&lt;"
      case ">": out += "&gt;"
      case "\"": out += "&quot;"
      case "'": out += "&#39;"
      default: out.append(c)
      }
    }
    return out
  }
}

/// A line chart over layers, as SVG: axes with ticks and labels, one polyline per series, a
/// legend on the right.
struct LineChart {
  struct Series {
    var name: String
    var values: [Double]
    var color: String
    var dash: String? = nil
  }

  var xLabel: String
  var yLabel: String
  var xs: [Int]
  var series: [Series]
  var percent = false

  static let width = 760
  static let height = 300
  static let left = 64
  static let right = 150
  static let top = 12
  static let bottom = 44

  var svg: String {
    let w = Self.width
    let h = max(Self.height, Self.top + Self.bottom + 18 * series.count)
    let plotW = w - Self.left - Self.right
    let plotH = h - Self.top - Self.bottom
    let finite = series.flatMap(\.values).filter(\.isFinite)
    // Four or five gridlines a round step apart, from 0 (or below, for negative values).
    let step = Self.niceStep((max(finite.max() ?? 0, 0) - min(finite.min() ?? 0, 0)) / 4)
    let yMax = max(step, ((finite.max() ?? 0) / step).rounded(.up) * step)
    let yMin = min(0, ((finite.min() ?? 0) / step).rounded(.down) * step)
    let span = yMax - yMin
    let ticks = Int((span / step).rounded())
    let xMin = xs.first ?? 0
    let xMax = max(xs.last ?? 1, xMin + 1)
    func px(_ x: Int) -> Double {
      Double(Self.left) + Double(x - xMin) / Double(xMax - xMin) * Double(plotW)
    }
    func py(_ y: Double) -> Double {
      Double(Self.top) + (1 - (y - yMin) / span) * Double(plotH)
    }
    var out =
      "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(w)\" height=\"\(h)\" viewBox=\"0 0 \(w) \(h)\" role=\"img\">\n"
    // Axes and grid.
    out +=
      "<line x1=\"\(Self.left)\" y1=\"\(Self.top)\" x2=\"\(Self.left)\" y2=\"\(Self.top + plotH)\" stroke=\"#444\"/>\n"
    out +=
      "<line x1=\"\(Self.left)\" y1=\"\(Self.top + plotH)\" x2=\"\(Self.left + plotW)\" y2=\"\(Self.top + plotH)\" stroke=\"#444\"/>\n"
    for k in 0...ticks {
      let v = yMin + step * Double(k)
      let y = py(v)
      out +=
        "<line x1=\"\(Self.left)\" y1=\"\(f(y))\" x2=\"\(Self.left + plotW)\" y2=\"\(f(y))\" stroke=\"#ddd\"/>\n"
      out +=
        "<text x=\"\(Self.left - 6)\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(AnalyzeHTML.number(v))</text>\n"
    }
    let every = max(1, Int((Double(xs.count) / 16).rounded(.up)))
    for (k, x) in xs.enumerated() where k % every == 0 || k == xs.count - 1 {
      out +=
        "<text x=\"\(f(px(x)))\" y=\"\(Self.top + plotH + 16)\" text-anchor=\"middle\">\(x)</text>\n"
    }
    out +=
      "<text x=\"\(Self.left + plotW / 2)\" y=\"\(h - 6)\" text-anchor=\"middle\">\(AnalyzeHTML.escape(xLabel))</text>\n"
    out +=
      "<text transform=\"translate(14 \(Self.top + plotH / 2)) rotate(-90)\" text-anchor=\"middle\">\(AnalyzeHTML.escape(yLabel))</text>\n"
    // Series and legend.
    for (k, s) in series.enumerated() {
      let points = zip(xs, s.values).filter { $0.1.isFinite }.map {
        "\(f(px($0.0))),\(f(py($0.1)))"
      }
      let dash = s.dash.map { " stroke-dasharray=\"\($0)\"" } ?? ""
      if points.count == 1 {
        let p = points[0].split(separator: ",")
        out +=
          "<circle class=\"mark\" cx=\"\(p[0])\" cy=\"\(p[1])\" r=\"3\" fill=\"\(s.color)\"/>\n"
      } else if !points.isEmpty {
        out +=
          "<polyline class=\"mark\" fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"2\"\(dash) points=\"\(points.joined(separator: " "))\"><title>\(AnalyzeHTML.escape(s.name))</title></polyline>\n"
      }
      let ly = Self.top + 8 + k * 18
      let lx = Self.left + plotW + 12
      out +=
        "<line x1=\"\(lx)\" y1=\"\(ly)\" x2=\"\(lx + 24)\" y2=\"\(ly)\" stroke=\"\(s.color)\" stroke-width=\"2\"\(dash)/>\n"
      out += "<text x=\"\(lx + 30)\" y=\"\(ly + 4)\">\(AnalyzeHTML.escape(s.name))</text>\n"
    }
    return out + "</svg>\n"
  }

  func f(_ v: Double) -> String { String(format: "%.1f", v) }

  /// The smallest of 1, 2, 2.5, 5 × 10ᵏ at or above `v` (1 for 0).
  static func niceStep(_ v: Double) -> Double {
    guard v > 0, v.isFinite else { return 1 }
    let magnitude = pow(10, (log10(v)).rounded(.down))
    for m in [1.0, 2, 2.5, 5, 10] where m * magnitude >= v { return m * magnitude }
    return 10 * magnitude
  }
}
