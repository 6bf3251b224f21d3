import Foundation
import MergeModel

/// `merge analyze`: where fine-tunes changed a base, and how their task vectors interfere.
///
/// One tensor at a time (the base's and each fine-tune's values of that tensor in memory, as
/// f32; sums in f64): per tensor and fine-tune, ‖τ‖, ‖τ‖/‖θ_base‖, the share of entries changed
/// and the share of ‖τ‖² held by the largest 1% and 10% of entries; across fine-tunes, the cosine
/// matrix (whole model and per layer), the sign-conflict rate among entries two or more τ change,
/// after TIES trimming at `density` the overlap of the kept entries and the conflicts left among
/// them, and the shared component (the mean τ) with each τ's share of ‖τ‖² outside it.
public struct InterferenceReport: Sendable {
  /// One tensor's figures, one value per fine-tune.
  public struct Tensor: Sendable {
    public var name: String
    public var layer: Int?
    /// Its entries, and ‖θ_base‖.
    public var count = 0
    public var baseNorm = 0.0
    public var norm: [Double]
    public var relative: [Double]
    public var changed: [Double]
    public var top1: [Double]
    public var top10: [Double]
  }

  /// Sums that make up cosines and conflict rates over a set of tensors.
  public struct Sums: Sendable {
    /// ⟨τᵢ, τⱼ⟩.
    public var dots: [[Double]]
    /// Entries that two or more τ change, and those among them whose signs disagree.
    public var shared = 0
    public var conflicting = 0

    init(models: Int) {
      dots = Array(repeating: Array(repeating: 0, count: models), count: models)
    }

    /// The cosine matrix (0 where a τ is zero).
    public var cosine: [[Double]] {
      dots.indices.map { i in
        dots.indices.map { j in
          let d = (dots[i][i] * dots[j][j]).squareRoot()
          return d > 0 ? dots[i][j] / d : 0
        }
      }
    }

    /// The share of entries two or more τ change whose signs disagree.
    public var conflictRate: Double { shared > 0 ? Double(conflicting) / Double(shared) : 0 }

    mutating func add(_ other: Sums) {
      for i in dots.indices { for j in dots.indices { dots[i][j] += other.dots[i][j] } }
      shared += other.shared
      conflicting += other.conflicting
    }
  }

  public var base: String
  public var models: [String]
  /// TIES's density for the trimmed figures.
  public var density: Double
  public var tensors: [Tensor] = []
  public var whole: Sums
  public var layers: [Int: Sums] = [:]
  /// After TIES trimming: entries kept by one τ or more, by two or more, and conflicts among
  /// those kept by two or more.
  public var keptAny = 0
  public var keptShared = 0
  public var keptConflicting = 0
  /// ‖m‖² for the mean τ m (the shared component), and for each fine-tune the part of ‖τᵢ‖²
  /// outside m's direction, ‖τᵢ‖² − ⟨τᵢ, m⟩²/‖m‖² (so its share of ‖τᵢ‖² is 1 − cos²(τᵢ, m),
  /// between 0 and 1).
  public var sharedNormSquared = 0.0
  public var outsideSquared: [Double]
  public var normSquared: [Double]

  /// Analyzes `models` against `base` on `threads` workers (the figures are the same for any
  /// number).
  ///
  /// Every fine-tune is checked to hold every floating-point tensor of the base, in its shape,
  /// before any data is read. Then one tensor at a time: each τ as f32 in memory allocated once
  /// for the largest tensor, in a few passes over it (the k-th largest magnitudes found by a
  /// two-level histogram of their bit patterns, not a sort); the input pages of a tensor are
  /// dropped from the process once it is done.
  ///
  /// - Throws: `ModelError` for a model that cannot be read, or a tensor that a fine-tune lacks
  ///   or has in another shape.
  public static func analyze(
    base basePath: String, models modelPaths: [String], density: Double,
    threads: Int = ProcessInfo.processInfo.activeProcessorCount, chunk: Int = 1 << 16,
    kernels: Bool = true, progress: ((Int, Int) -> Void)? = nil
  ) throws(ModelError) -> InterferenceReport {
    guard modelPaths.count <= TauScratch.Counts.maxModels else {
      throw .badTaskVector(
        path: modelPaths[TauScratch.Counts.maxModels],
        reason: "analyze compares at most \(TauScratch.Counts.maxModels) fine-tunes")
    }
    let base = try ModelFolder(path: basePath).openWeights()
    var fine: [ModelWeights] = []
    for p in modelPaths { fine.append(try ModelFolder(path: p).openWeights()) }
    let n = modelPaths.count
    var report = InterferenceReport(
      base: basePath, models: modelPaths, density: density, whole: Sums(models: n),
      outsideSquared: Array(repeating: 0, count: n), normSquared: Array(repeating: 0, count: n))
    let tensors = base.tensors.filter { $0.dtype.isFloatingPoint }
    for info in tensors {
      for (m, weights) in fine.enumerated() {
        guard let other = weights.info(info.name) else {
          throw .missingTensor(path: modelPaths[m], tensor: info.name)
        }
        guard other.shape == info.shape else {
          throw .badTaskVector(
            path: modelPaths[m],
            reason: "tensor '\(info.name)' has shape \(other.shape) there, the base's \(info.shape)"
          )
        }
      }
    }
    let scratch = TauScratch(
      models: n, capacity: tensors.map(\.count).max() ?? 0, chunk: max(1, chunk),
      kernels: kernels)
    for (step, info) in tensors.enumerated() {
      let b = try base.tensor(info.name)
      var views: [TensorView] = []
      for weights in fine { views.append(try weights.tensor(info.name)) }
      report.add(info, base: b, fine: views, scratch: scratch, threads: max(1, threads))
      b.release()
      for v in views { v.release() }
      progress?(step + 1, tensors.count)
    }
    // The shared component m (the mean τ) from the dot products: ⟨τᵢ, m⟩ = Σⱼ⟨τᵢ, τⱼ⟩ / n,
    // ‖m‖² = Σᵢⱼ⟨τᵢ, τⱼ⟩ / n²; each τ's part outside m's direction.
    let dots = report.whole.dots
    let all = dots.joined().reduce(0, +)
    report.sharedNormSquared = n > 0 ? max(0, all / Double(n * n)) : 0
    for i in 0..<n {
      let along = dots[i].reduce(0, +) / Double(n)
      let projected = report.sharedNormSquared > 0 ? along * along / report.sharedNormSquared : 0
      report.outsideSquared[i] = max(0, dots[i][i] - projected)
    }
    return report
  }

  /// Adds one tensor's figures: `base`'s and each of `fine`'s values of it.
  mutating func add(
    _ info: TensorInfo, base: TensorView, fine: [TensorView], scratch: TauScratch, threads: Int
  ) {
    let n = fine.count
    let count = info.count
    guard count > 0 else {
      let zeros = [Double](repeating: 0, count: n)
      tensors.append(
        Tensor(
          name: info.name, layer: TensorNaming.layerIndex(of: info.name), count: 0, norm: zeros,
          relative: zeros, changed: zeros, top1: zeros, top10: zeros))
      return
    }
    // Pass 1: each τ into memory; its dot products, ‖θ_base‖², changed entries, signs, and the
    // histogram of each τ's magnitudes.
    let loaded = scratch.load(base: base, fine: fine, threads: threads)
    // Pass 2: the k-th largest magnitude of each τ for the top 1%, the top 10% and TIES's
    // density (`MagnitudeCut`, three per fine-tune in that order).
    let k = TaskVectorManifest.kept(count: count, density: density)
    let wanted = [0.01, 0.10].map { max(1, Int(($0 * Double(count)).rounded(.up))) } + [k]
    var cuts: [MagnitudeCut] = []
    for i in 0..<n {
      for (j, w) in wanted.enumerated() {
        cuts.append(
          MagnitudeCut(model: i, k: w, histogram: loaded.histogram, wantsSquares: j < 2))
      }
    }
    scratch.refine(&cuts, count: count, threads: threads)
    var figure = Tensor(
      name: info.name, layer: TensorNaming.layerIndex(of: info.name), count: count,
      baseNorm: loaded.baseNorm.squareRoot(), norm: [], relative: [],
      changed: [], top1: [], top10: [])
    for i in 0..<n {
      let total = loaded.sums.dots[i][i]
      normSquared[i] += total
      figure.norm.append(total.squareRoot())
      figure.relative.append(
        loaded.baseNorm > 0 ? total.squareRoot() / loaded.baseNorm.squareRoot() : 0)
      figure.changed.append(Double(loaded.changed[i]) / Double(count))
      figure.top1.append(total > 0 ? cuts[3 * i].topSquares / total : 0)
      figure.top10.append(total > 0 ? cuts[3 * i + 1].topSquares / total : 0)
    }
    // Passes 3 and 4: the entries TIES keeps.
    let kept = scratch.kept((0..<n).map { cuts[3 * $0 + 2] }, count: count, threads: threads)
    keptAny += kept.any
    keptShared += kept.shared
    keptConflicting += kept.conflicting
    whole.add(loaded.sums)
    if let layer = figure.layer {
      layers[layer, default: Sums(models: n)].add(loaded.sums)
    }
    tensors.append(figure)
  }

  /// One layer's figures, one value per fine-tune: over the layer's tensors, ‖τ‖,
  /// ‖τ‖/‖θ_base‖, the share of entries changed, the share of ‖τ‖² in each tensor's largest 1%
  /// and 10% of entries, and the sign-conflict rate.
  public struct Layer: Sendable {
    public var layer: Int
    public var norm: [Double]
    public var relative: [Double]
    public var changed: [Double]
    public var top1: [Double]
    public var top10: [Double]
    public var sums: Sums
  }

  /// The layers in order (tensors outside any layer, such as embeddings, are in none).
  public var layerFigures: [Layer] {
    let n = models.count
    var byLayer: [Int: [Tensor]] = [:]
    for t in tensors { if let l = t.layer { byLayer[l, default: []].append(t) } }
    return byLayer.keys.sorted().map { l in
      let ts = byLayer[l] ?? []
      let entries = ts.reduce(0) { $0 + $1.count }
      let base = ts.reduce(0.0) { $0 + $1.baseNorm * $1.baseNorm }
      var layer = Layer(
        layer: l, norm: [], relative: [], changed: [], top1: [], top10: [],
        sums: layers[l] ?? Sums(models: n))
      for i in 0..<n {
        let squares = ts.reduce(0.0) { $0 + $1.norm[i] * $1.norm[i] }
        layer.norm.append(squares.squareRoot())
        layer.relative.append(base > 0 ? (squares / base).squareRoot() : 0)
        layer.changed.append(
          entries > 0
            ? ts.reduce(0.0) { $0 + $1.changed[i] * Double($1.count) } / Double(entries) : 0)
        layer.top1.append(
          squares > 0 ? ts.reduce(0.0) { $0 + $1.top1[i] * $1.norm[i] * $1.norm[i] } / squares : 0)
        layer.top10.append(
          squares > 0 ? ts.reduce(0.0) { $0 + $1.top10[i] * $1.norm[i] * $1.norm[i] } / squares : 0)
      }
      return layer
    }
  }

  /// The report as JSON (`merge analyze --json`).
  public var json: JSONValue {
    func numbers(_ values: [Double]) -> JSONValue { .array(values.map { .number(Self.text($0)) }) }
    func matrix(_ m: [[Double]]) -> JSONValue { .array(m.map(numbers)) }
    return .object([
      ("base", .string(base)),
      ("models", .array(models.map { .string($0) })),
      ("cosine", matrix(whole.cosine)),
      ("sign_conflicts", .number(Self.text(whole.conflictRate))),
      (
        "ties",
        .object([
          ("density", .number(Self.text(density))),
          ("overlap", .number(Self.text(keptAny > 0 ? Double(keptShared) / Double(keptAny) : 0))),
          (
            "conflicts",
            .number(Self.text(keptShared > 0 ? Double(keptConflicting) / Double(keptShared) : 0))
          ),
        ])
      ),
      (
        "shared",
        .object([
          ("norm", .number(Self.text(sharedNormSquared.squareRoot()))),
          (
            "outside",
            numbers(
              zip(outsideSquared, normSquared).map { $1 > 0 ? $0 / $1 : 0 })
          ),
        ])
      ),
      (
        "layers",
        .array(
          layerFigures.map { l in
            .object([
              ("layer", .integer(l.layer)), ("norm", numbers(l.norm)),
              ("relative", numbers(l.relative)), ("changed", numbers(l.changed)),
              ("top1", numbers(l.top1)), ("top10", numbers(l.top10)),
              ("cosine", matrix(l.sums.cosine)),
              ("sign_conflicts", .number(Self.text(l.sums.conflictRate))),
            ])
          })
      ),
      (
        "tensors",
        .array(
          tensors.map { t in
            .object([
              ("name", .string(t.name)), ("base_norm", .number(Self.text(t.baseNorm))),
              ("norm", numbers(t.norm)),
              ("relative", numbers(t.relative)), ("changed", numbers(t.changed)),
              ("top1", numbers(t.top1)), ("top10", numbers(t.top10)),
            ])
          })
      ),
    ])
  }

  /// A number as JSON text (finite; shortest round-trip form).
  static func text(_ v: Double) -> String { v.isFinite ? "\(v)" : "0" }
}
