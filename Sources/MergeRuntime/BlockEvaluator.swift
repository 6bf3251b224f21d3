import MergeCompiler
import MergeModel

/// One worker's evaluation state for one pass over a tensor's blocks: a block-sized f32 buffer
/// per node the pass evaluates, reused block after block.
///
/// Owned by a single worker thread for its whole life; never shared. Its buffers are allocated
/// up front from ``Layout``, the same description `merge plan` prices, and it counts every byte
/// it allocates (``allocatedBytes``), so a test can hold the two to each other.
final class BlockEvaluator {
  /// What an evaluator allocates for a pass that evaluates `roots`.
  struct Layout: Equatable {
    /// The nodes evaluated block by block: the roots and their operands, not crossing
    /// reductions (whose values the pass reads, computed before).
    var nodes: [Int]
    /// Scratch buffers for per-model terms (sign consensus).
    var terms: Int
    /// Sort keys for the widest row of a row-wise operation.
    var keys: Int

    /// Bytes of byte scratch per element: room to encode a block of the widest dtype.
    static let scratchBytesPerElement = 8

    init(graph: TensorGraph, roots: [NodeID]) {
      var seen = Set<Int>()
      var stack = roots
      while let id = stack.popLast() {
        guard seen.insert(id.index).inserted else { continue }
        stack += graph[id].inputs.filter { !graph[$0].op.isReduction }
      }
      nodes = seen.sorted()
      terms = 0
      keys = 0
      for i in nodes {
        switch graph.nodes[i].op {
        case .signConsensus(let w, _), .fusedConsensus(let w, _, _, _):
          terms = max(terms, w.count + 2)
        case .keepByRank(_, _, _, let columns): keys = max(keys, columns)
        default: break
        }
      }
    }

    /// The bytes an evaluator with this layout allocates for blocks of `blockSize` elements.
    func bytes(blockSize: Int) -> Int {
      (nodes.count + terms) * blockSize * 4 + keys * 8 + blockSize * Self.scratchBytesPerElement
    }
  }

  let graph: TensorGraph
  let inputs: [InputTensor]
  let blockSize: Int
  private var buffers: [UnsafeMutablePointer<Float>?]
  private var stamps: [Int]
  private var termBuffers: [UnsafeMutablePointer<Float>] = []
  private var scratchSize: Int
  private var keys: [UInt64] = []
  /// Bytes this evaluator has allocated.
  private(set) var allocatedBytes = 0

  private let layout: Layout
  private var scratch: UnsafeMutableRawPointer?

  /// An evaluator whose buffers ``prepare()`` allocates.
  init(graph: TensorGraph, inputs: [InputTensor], blockSize: Int, layout: Layout) {
    self.graph = graph
    self.inputs = inputs
    self.blockSize = blockSize
    self.layout = layout
    buffers = [UnsafeMutablePointer<Float>?](repeating: nil, count: graph.nodes.count)
    stamps = [Int](repeating: -1, count: graph.nodes.count)
    scratchSize = 0
  }

  /// Allocates the layout's buffers, on the worker thread that will use them (glibc then takes
  /// them from that thread's arena, which keeps freed buffers for the next pass instead of
  /// handing the pages back and faulting them in again).
  func prepare() {
    guard scratch == nil else { return }
    _ = scratchBytes(blockSize * Layout.scratchBytesPerElement)
    for i in layout.nodes { _ = buffer(NodeID(index: i)) }
    if layout.terms > 0 { _ = scratchTerm(layout.terms - 1) }
    growKeys(to: layout.keys)
  }

  deinit {
    for b in buffers { b?.deallocate() }
    for b in termBuffers { b.deallocate() }
    scratch?.deallocate()
  }

  /// Scratch buffer `k` for a fused kernel's per-model terms.
  func scratchTerm(_ k: Int) -> UnsafeMutablePointer<Float> {
    while termBuffers.count <= k {
      termBuffers.append(UnsafeMutablePointer<Float>.allocate(capacity: blockSize))
      allocatedBytes += blockSize * 4
    }
    return termBuffers[k]
  }

  /// A byte buffer of at least `size` bytes, valid until the next call.
  func scratchBytes(_ size: Int) -> UnsafeMutableRawPointer {
    if let scratch, size <= scratchSize { return scratch }
    scratch?.deallocate()
    let fresh = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
    allocatedBytes += size - scratchSize
    scratch = fresh
    scratchSize = size
    return fresh
  }

  private func buffer(_ id: NodeID) -> UnsafeMutablePointer<Float> {
    if let b = buffers[id.index] { return b }
    let b = UnsafeMutablePointer<Float>.allocate(capacity: blockSize)
    buffers[id.index] = b
    allocatedBytes += blockSize * 4
    return b
  }

  private func growKeys(to count: Int) {
    guard keys.count < count else { return }
    allocatedBytes += (count - keys.count) * 8
    keys = [UInt64](repeating: 0, count: count)
  }

  // MARK: Evaluation

  /// The values of node `id` over `range` (block `block`), computed once per block.
  func evaluate(_ id: NodeID, block: Int, range: Range<Int>, env: Environment)
    -> UnsafeMutablePointer<Float>
  {
    let out = buffer(id)
    if stamps[id.index] == block { return out }
    let node = graph[id]
    func operand(_ k: Int) -> UnsafeMutablePointer<Float> {
      evaluate(node.inputs[k], block: block, range: range, env: env)
    }
    let n = range.count
    switch node.op {
    case .load(let input):
      inputs[input].read(range, into: UnsafeMutableBufferPointer(start: out, count: n))
    case .taskVector: Kernels.subtract(operand(0), operand(1), out, n)
    case .add: Kernels.add(operand(0), operand(1), out, n)
    case .scale(let c): Kernels.scale(operand(0), c, out, n)
    case .divide(let c): Kernels.divide(operand(0), c, out, n)
    case .keepTop, .keepBand, .keepRandom, .keepByRank, .rescaleL1:
      mask(node, operand(0), out, range: range, env: env)
    case .signConsensus, .fusedTaskSum, .fusedConsensus, .weightedSum, .sum, .slerpBlend,
      .disjoint, .projectOut:
      combine(node, out, block: block, range: range, env: env)
    case .store, .copyBytes, .sortPrefix, .l1Norm, .sumOfSquares, .normalizedDot, .dot,
      .wholeTensor:
      // Not elementwise values: the executor handles these.
      out.update(repeating: 0, count: n)
    }
    stamps[id.index] = block
    return out
  }

  /// The operations that keep or scale some entries of one value `x`.
  private func mask(
    _ node: Node, _ x: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>,
    range: Range<Int>, env: Environment
  ) {
    let n = range.count
    switch node.op {
    case .keepTop:
      let cut = env.cuts[node.inputs[1].index] ?? Cut(kind: .everything)
      cut.select(x, out, n, first: range.lowerBound, keepInside: true)
    case .keepBand:
      let low = env.cuts[node.inputs[1].index] ?? Cut(kind: .nothing)
      let high = env.cuts[node.inputs[2].index] ?? Cut(kind: .everything)
      // Inside the high prefix, then outside the low one.
      high.select(x, out, n, first: range.lowerBound, keepInside: true)
      low.select(out, out, n, first: range.lowerBound, keepInside: false)
    case .keepRandom(let density, let stream):
      Kernels.keepRandom(x, out, n, first: range.lowerBound, density: density, stream: stream)
    case .keepByRank(let density, let epsilon, let stream, let columns):
      keepByRank(
        x, out, n: n, first: range.lowerBound, density: density, epsilon: epsilon, stream: stream,
        columns: columns)
    case .rescaleL1:
      let before = Float(env.scalars[node.inputs[1].index])
      let after = Float(env.scalars[node.inputs[2].index])
      if before < 1e-7 || after < 1e-7 {
        out.update(from: x, count: n)
      } else {
        Kernels.scale(x, before / after, out, n)
      }
    default:
      out.update(repeating: 0, count: n)
    }
  }

  /// The operations that combine several values into one.
  private func combine(
    _ node: Node, _ out: UnsafeMutablePointer<Float>, block: Int, range: Range<Int>,
    env: Environment
  ) {
    let n = range.count
    func operand(_ k: Int) -> UnsafeMutablePointer<Float> {
      evaluate(node.inputs[k], block: block, range: range, env: env)
    }
    switch node.op {
    case .signConsensus(let weights, let normalize):
      let deltas = ContiguousArray(node.inputs.indices.map { UnsafePointer(operand($0)) })
      consensus(deltas, weights, normalize: normalize, out, n)
    case .fusedTaskSum(let weights, let divisor, let lambda):
      let base = UnsafePointer(operand(0))
      let xs = ContiguousArray(node.inputs.indices.dropFirst().map { UnsafePointer(operand($0)) })
      let w = ContiguousArray(weights)
      xs.withUnsafeBufferPointer { xs in
        w.withUnsafeBufferPointer { w in
          Kernels.fusedTaskSum(base, xs, w, out, n, divisor: divisor, lambda: lambda)
        }
      }
    case .fusedConsensus(let weights, let scales, let normalize, let lambda):
      let m = weights.count
      let base = operand(0)
      let cuts = (0..<m).map { env.cuts[node.inputs[1 + m + $0].index] ?? Cut(kind: .everything) }
      if range.lowerBound % 8 == 0, let kernel = ConsensusKernel(node.op, cuts: cuts) {
        let xs = (0..<m).map { UnsafePointer(operand(1 + $0)) as UnsafePointer<Float>? }
        kernel.run(base: base, xs, first: range.lowerBound, into: out, n)
        return
      }
      var terms = ContiguousArray<UnsafePointer<Float>>()
      for (k, cut) in cuts.enumerated() {
        let x = operand(1 + k)
        let term = scratchTerm(k)
        // (x − base), masked, scaled: the unfused order.
        for i in 0..<n { term[i] = x[i] - base[i] }
        cut.select(term, term, n, first: range.lowerBound, keepInside: true)
        if let c = scales[k] { Kernels.scale(term, c, term, n) }
        terms.append(UnsafePointer(term))
      }
      consensus(terms, weights, normalize: normalize, out, n)
      if let lambda { Kernels.scale(out, lambda, out, n) }
      Kernels.add(base, out, out, n)
    case .weightedSum(let weights):
      let xs = node.inputs.indices.map { operand($0) }
      out.update(repeating: 0, count: n)
      // torch's addcmul_ fuses each multiply-add (one rounding per term). In f64 the product
      // of two floats is exact, so rounding the f64 sum to f32 gives the fused result (save a
      // double rounding about once in 2^29 terms), and vectorizes where fmaf would be a call.
      for (k, x) in xs.enumerated() {
        let w = Double(weights[k])
        for i in 0..<n { out[i] = Float(Double(out[i]) + Double(x[i]) * w) }
      }
    case .disjoint(let position):
      let xs = node.inputs.indices.map { operand($0) }
      let own = xs[position]
      for i in 0..<n {
        let m = abs(own[i])
        var wins = true
        for (k, x) in xs.enumerated() where k != position {
          let other = abs(x[i])
          // Earlier inputs win ties; NaN compares false and keeps its own entry.
          if other > m || (k < position && other == m) {
            wins = false
            break
          }
        }
        out[i] = wins ? own[i] : Float(signOf: own[i], magnitudeOf: 0)
      }
    case .sum:
      let xs = node.inputs.indices.map { operand($0) }
      out.update(from: xs[0], count: n)
      for x in xs.dropFirst() {
        for i in 0..<n { out[i] += x[i] }
      }
    case .projectOut:
      let x = operand(0)
      let y = operand(1)
      let squares = env.scalars[node.inputs[3].index]
      let c = Float(squares > 0 ? env.scalars[node.inputs[2].index] / squares : 0)
      for i in 0..<n { out[i] = x[i] - c * y[i] }
    case .slerpBlend(let t):
      let a = operand(0)
      let b = operand(1)
      let (ca, cb) = Kernels.slerpCoefficients(t: t, cosine: env.scalars[node.inputs[4].index])
      for i in 0..<n { out[i] = ca * a[i] + cb * b[i] }
    default:
      out.update(repeating: 0, count: n)
    }
  }

  /// TIES' sign consensus of `deltas` with `weights` into `out`.
  private func consensus(
    _ deltas: ContiguousArray<UnsafePointer<Float>>, _ weights: [Float], normalize: Bool,
    _ out: UnsafeMutablePointer<Float>, _ n: Int
  ) {
    let w = ContiguousArray(weights)
    deltas.withUnsafeBufferPointer { d in
      w.withUnsafeBufferPointer { w in
        Kernels.signConsensus(
          d, w, out, n, normalize: normalize, total: scratchTerm(d.count),
          divisor: scratchTerm(d.count + 1))
      }
    }
  }

  /// DELLA's drop: within each row, the entry of ascending magnitude rank r (ties by index)
  /// is kept with probability `density − ε + 2ε·rank/(cols−1)` (a one-column row: `density`).
  private func keepByRank(
    _ x: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>, n: Int, first: Int,
    density: Float, epsilon: Float, stream: UInt64, columns: Int
  ) {
    let low = Float(Double(density) - Double(epsilon))
    growKeys(to: columns)
    var row = 0
    while row * columns < n {
      let start = row * columns
      let width = min(columns, n - start)
      for c in 0..<width {
        keys[c] = UInt64(x[start + c].magnitude.bitPattern) << 32 | UInt64(c)
      }
      keys[0..<width].sort()
      for r in 0..<width {
        let c = Int(keys[r] & 0xFFFF_FFFF)
        let norm: Float = width > 1 ? min(1, max(0, Float(r) / Float(width - 1))) : 0.5
        let p = low + norm * 2 * epsilon
        let index = start + c
        out[index] = x[index] * (Kernels.uniform(stream, first + index) < p ? 1 : 0)
      }
      row += 1
    }
  }
}
