import MergeCompiler
import MergeModel

/// One worker's evaluation state: a block-sized f32 buffer per node, reused block after block.
///
/// Owned by a single worker thread for its whole life; never shared.
final class BlockEvaluator {
  let graph: TensorGraph
  let views: [TensorView]
  let blockSize: Int
  private var buffers: [UnsafeMutablePointer<Float>?]
  private var stamps: [Int]
  private var scratch: UnsafeMutableRawPointer
  private var scratchSize: Int
  private var keys: [UInt64] = []

  init(graph: TensorGraph, views: [TensorView], blockSize: Int) {
    self.graph = graph
    self.views = views
    self.blockSize = blockSize
    buffers = [UnsafeMutablePointer<Float>?](repeating: nil, count: graph.nodes.count)
    stamps = [Int](repeating: -1, count: graph.nodes.count)
    scratchSize = blockSize * 8
    scratch = UnsafeMutableRawPointer.allocate(byteCount: scratchSize, alignment: 16)
  }

  deinit {
    for b in buffers { b?.deallocate() }
    for b in termBuffers { b.deallocate() }
    scratch.deallocate()
  }

  private var termBuffers: [UnsafeMutablePointer<Float>] = []

  /// Scratch buffer `k` for a fused kernel's per-model terms.
  func scratchTerm(_ k: Int) -> UnsafeMutablePointer<Float> {
    while termBuffers.count <= k {
      termBuffers.append(UnsafeMutablePointer<Float>.allocate(capacity: blockSize))
    }
    return termBuffers[k]
  }

  /// A byte buffer of at least `size` bytes, valid until the next call.
  func scratchBytes(_ size: Int) -> UnsafeMutableRawPointer {
    if size > scratchSize {
      scratch.deallocate()
      scratch = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
      scratchSize = size
    }
    return scratch
  }

  private func buffer(_ id: NodeID) -> UnsafeMutablePointer<Float> {
    if let b = buffers[id.index] { return b }
    let b = UnsafeMutablePointer<Float>.allocate(capacity: blockSize)
    buffers[id.index] = b
    return b
  }

  /// The values of node `id` over `range` (block `block`), computed once per block.
  func evaluate(_ id: NodeID, block: Int, range: Range<Int>, env: Environment)
    -> UnsafeMutablePointer<Float>
  {
    let out = buffer(id)
    if stamps[id.index] == block { return out }
    let node = graph[id]
    let n = range.count
    switch node.op {
    case .load(let input):
      views[input].decode(range, into: UnsafeMutableBufferPointer(start: out, count: n))
      if let dtype = graph.plan.inputDType, dtype != views[input].info.dtype {
        Kernels.roundTrip(out, n, to: dtype)
      }
    case .taskVector:
      let a = evaluate(node.inputs[0], block: block, range: range, env: env)
      let b = evaluate(node.inputs[1], block: block, range: range, env: env)
      Kernels.subtract(a, b, out, n)
    case .add:
      let a = evaluate(node.inputs[0], block: block, range: range, env: env)
      let b = evaluate(node.inputs[1], block: block, range: range, env: env)
      Kernels.add(a, b, out, n)
    case .scale(let c):
      Kernels.scale(evaluate(node.inputs[0], block: block, range: range, env: env), c, out, n)
    case .divide(let c):
      Kernels.divide(evaluate(node.inputs[0], block: block, range: range, env: env), c, out, n)
    case .keepTop:
      let x = evaluate(node.inputs[0], block: block, range: range, env: env)
      let cut = env.cuts[node.inputs[1].index] ?? Cut(kind: .everything)
      cut.select(x, out, n, first: range.lowerBound, keepInside: true)
    case .keepBand:
      let x = evaluate(node.inputs[0], block: block, range: range, env: env)
      let low = env.cuts[node.inputs[1].index] ?? Cut(kind: .nothing)
      let high = env.cuts[node.inputs[2].index] ?? Cut(kind: .everything)
      // Inside the high prefix, then outside the low one.
      high.select(x, out, n, first: range.lowerBound, keepInside: true)
      low.select(out, out, n, first: range.lowerBound, keepInside: false)
    case .keepRandom(let density, let stream):
      let x = evaluate(node.inputs[0], block: block, range: range, env: env)
      Kernels.keepRandom(x, out, n, first: range.lowerBound, density: density, stream: stream)
    case .keepByRank(let density, let epsilon, let stream, let columns):
      let x = evaluate(node.inputs[0], block: block, range: range, env: env)
      keepByRank(
        x, out, n: n, first: range.lowerBound, density: density, epsilon: epsilon, stream: stream,
        columns: columns)
    case .rescaleL1:
      let x = evaluate(node.inputs[0], block: block, range: range, env: env)
      let before = Float(env.scalars[node.inputs[1].index])
      let after = Float(env.scalars[node.inputs[2].index])
      if before < 1e-7 || after < 1e-7 {
        out.update(from: x, count: n)
      } else {
        Kernels.scale(x, before / after, out, n)
      }
    case .signConsensus(let weights, let normalize):
      let deltas = ContiguousArray(
        node.inputs.map { UnsafePointer(evaluate($0, block: block, range: range, env: env)) })
      let w = ContiguousArray(weights)
      deltas.withUnsafeBufferPointer { d in
        w.withUnsafeBufferPointer { w in
          Kernels.signConsensus(
            d, w, out, n, normalize: normalize, total: scratchTerm(d.count),
            divisor: scratchTerm(d.count + 1))
        }
      }
    case .fusedTaskSum(let weights, let divisor, let lambda):
      let base = UnsafePointer(evaluate(node.inputs[0], block: block, range: range, env: env))
      let xs = ContiguousArray(
        node.inputs.dropFirst().map {
          UnsafePointer(evaluate($0, block: block, range: range, env: env))
        })
      let w = ContiguousArray(weights)
      xs.withUnsafeBufferPointer { xs in
        w.withUnsafeBufferPointer { w in
          Kernels.fusedTaskSum(base, xs, w, out, n, divisor: divisor, lambda: lambda)
        }
      }
    case .fusedConsensus(let weights, let scales, let normalize, let lambda):
      let m = weights.count
      let base = evaluate(node.inputs[0], block: block, range: range, env: env)
      var terms = ContiguousArray<UnsafePointer<Float>>()
      for k in 0..<m {
        let x = evaluate(node.inputs[1 + k], block: block, range: range, env: env)
        let cut = env.cuts[node.inputs[1 + m + k].index] ?? Cut(kind: .everything)
        let term = scratchTerm(k)
        // (x − base), masked, scaled: the unfused order.
        for i in 0..<n { term[i] = x[i] - base[i] }
        cut.select(term, term, n, first: range.lowerBound, keepInside: true)
        if let c = scales[k] { Kernels.scale(term, c, term, n) }
        terms.append(UnsafePointer(term))
      }
      let w = ContiguousArray(weights)
      terms.withUnsafeBufferPointer { d in
        w.withUnsafeBufferPointer { w in
          Kernels.signConsensus(
            d, w, out, n, normalize: normalize, total: scratchTerm(m), divisor: scratchTerm(m + 1))
        }
      }
      if let lambda { Kernels.scale(out, lambda, out, n) }
      Kernels.add(base, out, out, n)
    case .weightedSum(let weights):
      let xs = node.inputs.map { evaluate($0, block: block, range: range, env: env) }
      out.update(repeating: 0, count: n)
      for (k, x) in xs.enumerated() {
        let w = weights[k]
        for i in 0..<n { out[i] += x[i] * w }
      }
    case .sum:
      let xs = node.inputs.map { evaluate($0, block: block, range: range, env: env) }
      out.update(from: xs[0], count: n)
      for x in xs.dropFirst() {
        for i in 0..<n { out[i] += x[i] }
      }
    case .slerpBlend(let t):
      let a = evaluate(node.inputs[0], block: block, range: range, env: env)
      let b = evaluate(node.inputs[1], block: block, range: range, env: env)
      let (ca, cb) = Kernels.slerpCoefficients(t: t, cosine: env.scalars[node.inputs[4].index])
      for i in 0..<n { out[i] = ca * a[i] + cb * b[i] }
    case .store, .copyBytes, .sortPrefix, .l1Norm, .sumOfSquares, .normalizedDot, .wholeTensor:
      // Not elementwise values: the executor handles these.
      out.update(repeating: 0, count: n)
    }
    stamps[id.index] = block
    return out
  }

  /// DELLA's drop: within each row, the entry of ascending magnitude rank r (ties by index)
  /// is kept with probability `density − ε + 2ε·r/(cols−1)` (a one-column row: `density`).
  private func keepByRank(
    _ x: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>, n: Int, first: Int,
    density: Float, epsilon: Float, stream: UInt64, columns: Int
  ) {
    let low = Float(Double(density) - Double(epsilon))
    if keys.count < columns { keys = [UInt64](repeating: 0, count: columns) }
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
