import MergeCompiler
import MergeModel

/// One input of an output tensor as the merge reads it: the stored tensor decoded to f32, with
/// its model's LoRA adapter applied, rounded as the recipe's `dtype` says.
///
/// A LoRA change `W + scale · B·A` is computed a block of rows at a time as the tensor is read:
/// the factors (`r · (rows + columns)` values) are decoded once, and no dense `B·A` is ever
/// held. The sums are PEFT's: `Σₖ B[i,k]·A[k,j]` in order of `k`, times the scale, added to `W`.
struct InputTensor: @unchecked Sendable {
  /// The stored tensor (the adapter's, for a tensor the adapter replaces).
  let view: TensorView
  /// The adapter's factors, when it changes this tensor.
  let delta: Delta?
  /// The model's task vector for this tensor (`model+taskvectorfolder`), added as it is read.
  var taskVector: TaskVectorDelta? = nil
  /// The dtype the adapted value is rounded to (`--lora-merge-dtype`), if any.
  let adapterDType: DType?
  /// The dtype the value is rounded to before computing (the recipe's `dtype`), if any.
  let inputDType: DType?
  /// For a vocabulary tensor of a merge with a tokenizer section: its rows laid out in the
  /// output vocabulary, read from this input and the others.
  var aligned: Alignment?

  /// `W[i, j] += scale · Σₖ left[i, k] · right[k, j]`, in f32.
  struct Delta {
    /// `[rows, rank]`, row-major.
    var left: [Float]
    /// `[rank, columns]`, row-major.
    var right: [Float]
    var rank: Int
    var columns: Int
    var scale: Float

    /// The bytes of the decoded factors.
    var bytes: Int { (left.count + right.count) * 4 }
  }

  /// A task vector's entries for one tensor: dense (its stored tensor), or sparse (values at
  /// ascending positions).
  struct TaskVectorDelta {
    var dense: TensorView?
    var values: [Float] = []
    var positions: [Int] = []

    /// Adds τ over `range` to `out`.
    func add(_ range: Range<Int>, _ out: UnsafeMutablePointer<Float>) {
      if let dense {
        let tau = [Float](unsafeUninitializedCapacity: range.count) { b, n in
          dense.decode(range, into: b)
          n = range.count
        }
        for k in 0..<range.count { out[k] += tau[k] }
        return
      }
      // The first stored position in the range (binary search), then every one in it.
      var lo = 0
      var hi = positions.count
      while lo < hi {
        let mid = (lo + hi) / 2
        if positions[mid] < range.lowerBound { lo = mid + 1 } else { hi = mid }
      }
      while lo < positions.count, positions[lo] < range.upperBound {
        out[positions[lo] - range.lowerBound] += values[lo]
        lo += 1
      }
    }
  }

  /// The tensor's dtype, name and shape as stored.
  var info: TensorInfo { view.info }

  /// Opens input `input` of `plan`; a tensor of an intermediate stage is read from `stages`.
  init(
    _ input: TensorInput, plan: TensorPlan, models: [ResolvedModel], stages: StageTensors
  ) throws(ModelError) {
    let model = models[input.model]
    inputDType = plan.inputDType
    adapterDType = input.adapter == nil ? nil : plan.adapterDType
    func stored() throws(ModelError) -> TensorView {
      guard let stage = model.stage else { return try model.weights.tensor(input.tensor) }
      return try stages.view(stage: stage, input.info)
    }
    switch input.adapter {
    case nil:
      view = try stored()
      delta = nil
    case .replaced(let stored)?:
      view = try Self.adapterWeights(model).tensor(stored)
      delta = nil
    case .taskVector(let sparse)?:
      view = try stored()
      delta = nil
      guard let source = model.taskVector else {
        throw .badTaskVector(path: model.path, reason: "the model has no task vector")
      }
      if sparse {
        let (values, positions) = try source.sparseEntries(input.tensor, count: view.count)
        taskVector = TaskVectorDelta(
          dense: nil, values: values.map { Float($0) }, positions: positions)
      } else {
        let tau = try source.weights.tensor(input.tensor)
        guard tau.count == view.count else {
          throw .badTaskVector(path: source.path, reason: "'\(input.tensor)' has another size")
        }
        taskVector = TaskVectorDelta(dense: tau)
      }
    case .delta(let d)?:
      view = try stored()
      let weights = try Self.adapterWeights(model)
      delta = Self.factors(
        d, a: try weights.tensor(d.a), b: try weights.tensor(d.b),
        columns: view.info.shape.last ?? 1)
    }
  }

  private static func adapterWeights(_ model: ResolvedModel) throws(ModelError) -> ModelWeights {
    guard let adapter = model.adapter else {
      throw .badAdapter(path: model.path, reason: "the model has no adapter")
    }
    return adapter.weights
  }

  /// The factors of `d` decoded to f32 in the `left · right` layout of the adapted tensor.
  private static func factors(_ d: LoraDelta, a: TensorView, b: TensorView, columns: Int) -> Delta {
    func decoded(_ v: TensorView) -> [Float] {
      [Float](unsafeUninitializedCapacity: v.count) { buffer, initialized in
        v.decode(0..<v.count, into: buffer)
        initialized = v.count
      }
    }
    let (a32, b32) = (decoded(a), decoded(b))
    let r = d.rank
    guard d.transposed else {
      // B is [rows, r], A is [r, columns]: already left · right.
      return Delta(left: b32, right: a32, rank: r, columns: columns, scale: d.scale)
    }
    // (B·A)ᵀ: A is [r, rows], B is [columns, r]; left = Aᵀ, right = Bᵀ.
    let rows = a.info.shape[1]
    var left = [Float](repeating: 0, count: rows * r)
    var right = [Float](repeating: 0, count: r * columns)
    for k in 0..<r {
      for i in 0..<rows { left[i * r + k] = a32[k * rows + i] }
      for j in 0..<columns { right[k * columns + j] = b32[j * r + k] }
    }
    return Delta(left: left, right: right, rank: r, columns: columns, scale: d.scale)
  }

  /// Elements `range` as f32 into `out` (which holds `range.count`).
  func read(_ range: Range<Int>, into out: UnsafeMutableBufferPointer<Float>) {
    guard let base = out.baseAddress else { return }
    if let aligned {
      aligned.read(range, into: base)
    } else {
      readStored(range, into: base)
    }
    if let inputDType,
      aligned != nil || delta != nil || taskVector != nil || inputDType != view.info.dtype
    {
      Kernels.roundTrip(base, range.count, to: inputDType)
    }
  }

  /// Elements `range` of the stored tensor, its adapter applied.
  func readStored(_ range: Range<Int>, into base: UnsafeMutablePointer<Float>) {
    view.decode(range, into: UnsafeMutableBufferPointer(start: base, count: range.count))
    taskVector?.add(range, base)
    if let delta {
      Self.add(delta, range, base)
      if let adapterDType { Kernels.roundTrip(base, range.count, to: adapterDType) }
    }
  }

  /// Opens every input of `plan`, the vocabulary tensors' rows aligned to the output's
  /// vocabulary.
  static func open(
    _ plan: TensorPlan, models: [ResolvedModel], stages: StageTensors = .none
  ) throws(ModelError) -> [InputTensor] {
    var inputs: [InputTensor] = []
    for input in plan.inputs {
      inputs.append(try InputTensor(input, plan: plan, models: models, stages: stages))
    }
    let stored = inputs
    for (i, input) in plan.inputs.enumerated() {
      guard let alignment = input.alignment else { continue }
      let aligned = Alignment(alignment, peers: stored, columns: plan.shape.last ?? 1, owner: i)
      inputs[i].aligned = aligned
    }
    return inputs
  }

  /// An input's rows in the output vocabulary: each its own row, another input's, a mean of
  /// several, or zeros (mergekit's embedding permutation), computed a row segment at a time;
  /// padding rows are the mean of the real ones.
  final class Alignment: @unchecked Sendable {
    let alignment: RowAlignment
    let peers: [InputTensor]
    let columns: Int
    /// The mean of the real rows, for padding rows.
    private(set) var padding: [Float] = []

    init(_ alignment: RowAlignment, peers: [InputTensor], columns: Int, owner: Int) {
      self.alignment = alignment
      self.peers = peers
      self.columns = max(1, columns)
      self.owner = owner
      if alignment.paddedCount > alignment.rows.count { padding = meanRow() }
    }

    /// The mean of the aligned real rows (f64 sums).
    private func meanRow() -> [Float] {
      var sums = [Double](repeating: 0, count: columns)
      var row = [Float](repeating: 0, count: columns)
      for r in alignment.rows.indices {
        row.withUnsafeMutableBufferPointer { b in
          if let p = b.baseAddress { fill(r, 0..<columns, into: p) }
        }
        for c in 0..<columns { sums[c] += Double(row[c]) }
      }
      let n = Double(max(1, alignment.rows.count))
      return sums.map { Float($0 / n) }
    }

    /// Columns `cols` of output row `r` into `out`.
    private func fill(_ r: Int, _ cols: Range<Int>, into out: UnsafeMutablePointer<Float>) {
      func stored(_ input: Int, _ row: Int, _ to: UnsafeMutablePointer<Float>) {
        let start = row * columns + cols.lowerBound
        peers[input].readStored(start..<(start + cols.count), into: to)
      }
      guard r < alignment.rows.count else {
        for (k, c) in cols.enumerated() { out[k] = padding[c] }
        return
      }
      switch alignment.rows[r] {
      case .own(let row):
        // `own` rows were made relative to the input this alignment belongs to.
        stored(owner, row, out)
      case .other(let input, let row): stored(input, row, out)
      case .zero: out.update(repeating: 0, count: cols.count)
      case .mean(let sources):
        out.update(repeating: 0, count: cols.count)
        var term = [Float](repeating: 0, count: cols.count)
        for s in sources {
          term.withUnsafeMutableBufferPointer { b in
            if let p = b.baseAddress { stored(s.input, s.row, p) }
          }
          for k in 0..<cols.count { out[k] += term[k] }
        }
        let n = Float(max(1, sources.count))
        for k in 0..<cols.count { out[k] /= n }
      }
    }

    /// The input this alignment lays out.
    let owner: Int

    func read(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
      var e = range.lowerBound
      while e < range.upperBound {
        let r = e / columns
        let c = e % columns
        let n = min(columns - c, range.upperBound - e)
        fill(r, c..<(c + n), into: out + (e - range.lowerBound))
        e += n
      }
    }
  }

  /// Adds `scale · left · right` over `range` of the flattened tensor, one row segment at a
  /// time, each term summed over `k` in order before it is scaled (as `(B @ A) * scale`).
  static func add(_ d: Delta, _ range: Range<Int>, _ out: UnsafeMutablePointer<Float>) {
    let columns = max(1, d.columns)
    var sum = [Float](repeating: 0, count: columns)
    d.left.withUnsafeBufferPointer { left in
      d.right.withUnsafeBufferPointer { right in
        var e = range.lowerBound
        while e < range.upperBound {
          let i = e / columns
          let j0 = e % columns
          let j1 = min(columns, j0 + (range.upperBound - e))
          let n = j1 - j0
          sum.withUnsafeMutableBufferPointer { s in
            for j in 0..<n { s[j] = 0 }
            for k in 0..<d.rank {
              let l = left[i * d.rank + k]
              let row = k * columns + j0
              for j in 0..<n { s[j] += l * right[row + j] }
            }
            let o = out + (e - range.lowerBound)
            for j in 0..<n { o[j] += s[j] * d.scale }
          }
          e += n
        }
      }
    }
  }
}
