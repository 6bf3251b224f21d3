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
  /// ‖mean τ‖², and Σ‖τᵢ − mean τ‖² for each fine-tune.
  public var sharedNormSquared = 0.0
  public var outsideSquared: [Double]
  public var normSquared: [Double]

  /// Analyzes `models` against `base`.
  ///
  /// - Throws: `ModelError` for a model that cannot be read, or a tensor that a fine-tune lacks
  ///   or has in another shape.
  public static func analyze(
    base basePath: String, models modelPaths: [String], density: Double,
    progress: ((Int, Int) -> Void)? = nil
  ) throws(ModelError) -> InterferenceReport {
    let base = try ModelFolder(path: basePath).openWeights()
    var fine: [ModelWeights] = []
    for p in modelPaths { fine.append(try ModelFolder(path: p).openWeights()) }
    let n = modelPaths.count
    var report = InterferenceReport(
      base: basePath, models: modelPaths, density: density, whole: Sums(models: n),
      outsideSquared: Array(repeating: 0, count: n), normSquared: Array(repeating: 0, count: n))
    let tensors = base.tensors.filter { $0.dtype.isFloatingPoint }
    for (step, info) in tensors.enumerated() {
      let b = try base.tensor(info.name).floats()
      var taus: [[Float]] = []
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
        let f = try weights.tensor(info.name).floats()
        taus.append(zip(f, b).map { $0 - $1 })
      }
      report.add(info, base: b, taus: taus)
      progress?(step + 1, tensors.count)
    }
    return report
  }

  /// Adds one tensor's figures.
  mutating func add(_ info: TensorInfo, base b: [Float], taus: [[Float]]) {
    let n = taus.count
    let count = b.count
    var baseNorm = 0.0
    for x in b { baseNorm += Double(x) * Double(x) }
    var sums = Sums(models: n)
    var figure = Tensor(
      name: info.name, layer: TensorNaming.layerIndex(of: info.name), norm: [], relative: [],
      changed: [], top1: [], top10: [])
    for i in 0..<n {
      for j in i..<n {
        var d = 0.0
        for e in 0..<count { d += Double(taus[i][e]) * Double(taus[j][e]) }
        sums.dots[i][j] = d
        sums.dots[j][i] = d
      }
      let squares = taus[i].map { Double($0) * Double($0) }
      let total = sums.dots[i][i]
      normSquared[i] += total
      figure.norm.append(total.squareRoot())
      figure.relative.append(baseNorm > 0 ? total.squareRoot() / baseNorm.squareRoot() : 0)
      figure.changed.append(
        count > 0 ? Double(taus[i].count(where: { $0 != 0 })) / Double(count) : 0)
      let sorted = squares.sorted(by: >)
      func share(_ fraction: Double) -> Double {
        guard total > 0 else { return 0 }
        let k = max(1, Int((fraction * Double(count)).rounded(.up)))
        return sorted.prefix(k).reduce(0, +) / total
      }
      figure.top1.append(share(0.01))
      figure.top10.append(share(0.10))
    }
    // Signs: entries two or more τ change.
    for e in 0..<count {
      var positive = 0
      var negative = 0
      for i in 0..<n {
        let v = taus[i][e]
        if v > 0 { positive += 1 } else if v < 0 { negative += 1 }
      }
      if positive + negative >= 2 {
        sums.shared += 1
        if positive > 0 && negative > 0 { sums.conflicting += 1 }
      }
    }
    // TIES trimming: each τ keeps its ⌊density·count⌋ largest magnitudes (equal ones by position).
    let k = TaskVectorManifest.kept(count: count, density: density)
    var keptBy = [[Bool]](repeating: [Bool](repeating: false, count: count), count: n)
    for i in 0..<n {
      for e in TaskVectors.topEntries(byMagnitude: taus[i].map(Double.init), k) {
        keptBy[i][e] = true
      }
    }
    for e in 0..<count {
      var kept = 0
      var positive = 0
      var negative = 0
      for i in 0..<n where keptBy[i][e] {
        kept += 1
        if taus[i][e] > 0 { positive += 1 } else if taus[i][e] < 0 { negative += 1 }
      }
      if kept >= 1 { keptAny += 1 }
      if kept >= 2 {
        keptShared += 1
        if positive > 0 && negative > 0 { keptConflicting += 1 }
      }
    }
    // The shared component: the mean τ, and each τ's part outside it.
    for e in 0..<count {
      var mean = 0.0
      for i in 0..<n { mean += Double(taus[i][e]) }
      mean /= Double(max(1, n))
      sharedNormSquared += mean * mean
      for i in 0..<n {
        let d = Double(taus[i][e]) - mean
        outsideSquared[i] += d * d
      }
    }
    whole.add(sums)
    if let layer = figure.layer {
      layers[layer, default: Sums(models: n)].add(sums)
    }
    tensors.append(figure)
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
          layers.keys.sorted().map { l in
            let s = layers[l] ?? Sums(models: models.count)
            return .object([
              ("layer", .integer(l)),
              ("norm", numbers(s.dots.indices.map { s.dots[$0][$0].squareRoot() })),
              ("cosine", matrix(s.cosine)),
              ("sign_conflicts", .number(Self.text(s.conflictRate))),
            ])
          })
      ),
      (
        "tensors",
        .array(
          tensors.map { t in
            .object([
              ("name", .string(t.name)), ("norm", numbers(t.norm)),
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
