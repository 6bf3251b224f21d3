import CMergeSupport
import Dispatch
import MergeCompiler
import MergeModel
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Why a tensor could not be computed or written.
public struct ExecutionError: Error, Sendable, CustomStringConvertible {
  /// The tensor.
  public var tensor: String
  /// What went wrong.
  public var reason: String
  public var description: String { "tensor '\(tensor)': \(reason)" }
}

/// Evaluates one ``TensorGraph`` over fixed-size blocks with a pool of worker threads.
///
/// The block partition depends only on the tensor's shape (64 Ki elements, or whole rows for
/// row-wise operations), never on the thread count. Reductions keep one partial result per
/// block and combine them in block order (floating point) or exactly (integer histograms), so
/// the output bytes are the same for any number of threads. Elementwise chains are evaluated
/// block by block in cache-sized buffers: no intermediate tensor is ever materialized.
struct TensorExecutor {
  static let blockElements = 1 << 16

  let graph: TensorGraph
  let models: [ResolvedModel]
  let inputs: [InputTensor]
  let cache: ReductionCache?
  let threads: Int
  let blockSize: Int
  let blockCount: Int
  let count: Int
  let schedule: Schedule
  /// What this tensor's computation has allocated so far.
  let allocated: FootprintCounter
  /// Asks the computation to stop between blocks.
  let cancellation: Cancellation?
  /// The intermediate stages' tensors in memory, and their identities.
  let stages: StageTensors

  init(
    graph: TensorGraph, models: [ResolvedModel], threads: Int, cache: ReductionCache? = nil,
    schedule: Schedule = Schedule(), cancellation: Cancellation? = nil,
    stages: StageTensors = .none
  ) throws(ExecutionError) {
    self.graph = graph
    self.stages = stages
    self.cancellation = cancellation
    self.models = models
    self.cache = cache
    self.threads = max(1, threads)
    self.schedule = schedule
    do {
      self.inputs = try InputTensor.open(graph.plan, models: models, stages: stages)
    } catch {
      throw ExecutionError(tensor: graph.plan.name, reason: error.description)
    }
    count = graph.plan.count
    blockSize = Self.blockSize(of: graph)
    blockCount = max(1, (count + blockSize - 1) / blockSize)
    var footprint = TensorFootprint(
      tensor: graph.plan.name, blockSize: blockSize,
      workers: Self.workers(threads: self.threads, blocks: blockCount))
    footprint.adapterBytes = self.inputs.reduce(0) { $0 + ($1.delta?.bytes ?? 0) }
    allocated = FootprintCounter(footprint)
  }

  /// Worker threads of a pass: one per block at most.
  static func workers(threads: Int, blocks: Int) -> Int { max(1, min(threads, blocks)) }

  /// What the computation allocated (buffers the cost model prices; complete after `run`).
  var footprint: TensorFootprint { allocated.value }

  /// Elements per block: 64 Ki, or whole rows for row-wise operations.
  static func blockSize(of graph: TensorGraph) -> Int {
    var block = blockElements
    for node in graph.nodes {
      if case .keepByRank(_, _, _, let columns) = node.op {
        block = max(1, blockElements / max(1, columns)) * max(1, columns)
      }
    }
    return block
  }

  // MARK: Running

  /// Computes the tensor and hands each block's bytes to `write(byteOffset, bytes)`.
  func run(write: @Sendable (Int, UnsafeRawBufferPointer) throws -> Void) throws {
    let output = graph[graph.output]
    if case .copyBytes = output.op {
      try write(0, inputs[0].view.bytes)
      return
    }
    guard case .store(let dtype) = output.op else {
      throw ExecutionError(tensor: graph.plan.name, reason: "the graph does not end in a store")
    }
    if case .wholeTensor(let kernel) = graph[output.inputs[0]].op {
      try runWholeTensor(
        kernel.base, loads: graph[output.inputs[0]].inputs, dtype: dtype, write: write)
      return
    }
    var env = Environment(nodeCount: graph.nodes.count)
    // Reductions that do not depend on one another run at the same time (the sort prefixes of
    // several task vectors, say), so their single-threaded parts overlap.
    for level in Self.reductionLevels(graph) {
      try reduceLevel(level, &env)
    }
    let frozen = env
    let direct = DirectStore(
      graph, root: output.inputs[0], dtype: dtype, inputs: inputs, blockSize: blockSize,
      env: frozen)
    try forEachBlock(evaluating: [output.inputs[0]]) { evaluator, block in
      let range = self.range(of: block)
      let bytes = range.count * dtype.byteSize
      let scratch = evaluator.scratchBytes(bytes)
      if let direct {
        direct.run(range, into: scratch)
      } else {
        let values = evaluator.evaluate(output.inputs[0], block: block, range: range, env: frozen)
        Kernels.encode(values, range.count, dtype, into: scratch)
      }
      try write(
        range.lowerBound * dtype.byteSize, UnsafeRawBufferPointer(start: scratch, count: bytes))
    }
  }

  /// Decodes the kernel's inputs whole, runs it on this thread, and writes the result.
  func runWholeTensor(
    _ kernel: any WholeTensorKernel, loads: [NodeID], dtype: DType,
    write: @Sendable (Int, UnsafeRawBufferPointer) throws -> Void
  ) throws {
    var arrays: [[Float]] = []
    for id in loads {
      guard case .load(let input) = graph[id].op else {
        throw ExecutionError(
          tensor: graph.plan.name, reason: "a whole-tensor kernel reads loads only")
      }
      let values = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
        inputs[input].read(0..<count, into: buffer)
        initialized = count
      }
      if schedule.releaseWindow != nil { release(input, upTo: count) }
      arrays.append(values)
    }
    let result = kernel(arrays, shape: graph.plan.shape)
    var bytes = [UInt8](repeating: 0, count: count * dtype.byteSize)
    allocated.update {
      $0.wholeTensorBytes = arrays.reduce(0) { $0 + $1.count * 4 } + result.count * 4 + bytes.count
    }
    result.withUnsafeBufferPointer { r in
      bytes.withUnsafeMutableBytes { out in
        if let src = r.baseAddress, let dst = out.baseAddress {
          Kernels.encode(src, count, dtype, into: dst)
        }
      }
    }
    try bytes.withUnsafeBytes { try write(0, $0) }
  }

  func range(of block: Int) -> Range<Int> {
    let start = block * blockSize
    return start..<min(count, start + blockSize)
  }

  /// Runs `body` for every block on the worker pool; rethrows the first error.
  ///
  /// With a release window (a memory budget), the blocks go in windows of that many: when a
  /// window is done, the input pages behind it are dropped from the process, so only about a
  /// window of each input is resident at a time (a later pass maps them again from the page
  /// cache).
  func forEachBlock(
    evaluating roots: [NodeID], releasingEvery releaseWindow: Int? = nil,
    _ body: @Sendable (BlockEvaluator, Int) throws -> Void
  ) throws {
    let releaseWindow = releaseWindow ?? schedule.releaseWindow
    let window = releaseWindow.map { max(1, $0) } ?? blockCount
    let workers = Self.workers(threads: threads, blocks: blockCount)
    let layout = BlockEvaluator.Layout(graph: graph, roots: roots)
    let evaluators = EvaluatorPool(
      (0..<workers).map { _ in
        BlockEvaluator(graph: graph, inputs: inputs, blockSize: blockSize, layout: layout)
      })
    defer {
      let bytes = evaluators.items.reduce(0) { $0 + $1.allocatedBytes }
      allocated.update { $0.evaluatorBytes = max($0.evaluatorBytes, bytes) }
    }
    var start = 0
    while start < blockCount {
      let end = min(blockCount, start + window)
      try forEachBlock(in: start..<end, evaluators: evaluators, body)
      if releaseWindow != nil {
        for input in inputs.indices { release(input, upTo: min(count, end * blockSize)) }
      }
      start = end
    }
  }

  private func forEachBlock(
    in blocks: Range<Int>, evaluators: EvaluatorPool,
    _ body: @Sendable (BlockEvaluator, Int) throws -> Void
  ) throws {
    let next = Atomic<Int>(blocks.lowerBound)
    let failure = Mutex<(any Error)?>(nil)
    let workers = min(evaluators.items.count, blocks.count)
    DispatchQueue.concurrentPerform(iterations: workers) { w in
      let evaluator = evaluators.items[w]
      evaluator.prepare()
      while true {
        if failure.withLock({ $0 != nil }) { return }
        if let signal = cancellation?.signal {
          failure.withLock { if $0 == nil { $0 = Interrupted(signal: signal) } }
          return
        }
        let block = next.add(1, ordering: .relaxed).oldValue
        if block >= blocks.upperBound { return }
        do {
          try body(evaluator, block)
        } catch {
          failure.withLock { if $0 == nil { $0 = error } }
          return
        }
      }
    }
    if let error = failure.withLock({ $0 }) { throw error }
  }

  /// Drops the pages of input `input` that hold its first `elements` elements from the process.
  func release(_ input: Int, upTo elements: Int) {
    let view = inputs[input].view
    view.release(0..<min(view.count, elements))
  }

  // MARK: Reductions

  /// The reductions grouped by depth: each needs only reductions of earlier groups.
  static func reductionLevels(_ graph: TensorGraph) -> [[NodeID]] {
    var depth = [Int](repeating: 0, count: graph.nodes.count)
    var levels: [[NodeID]] = []
    for (i, node) in graph.nodes.enumerated() {
      var d = node.inputs.map { depth[$0.index] }.max() ?? 0
      if node.op.isReduction {
        d += 1
        while levels.count < d { levels.append([]) }
        levels[d - 1].append(NodeID(index: i))
      }
      depth[i] = d
    }
    return levels
  }

  /// Computes the reductions of one level (none needs another of the same level).
  ///
  /// Cached results are taken from the cache. The L1 norms share one pass over the blocks, and
  /// so do the gathers of the sort prefixes (the inputs they share, such as the base model, are
  /// decoded once per block); the prefixes then finish at the same time. Sort prefixes hold
  /// about 5.5 bytes per element while they work, so they share passes as
  /// ``selectionGroups(count:selections:inputBytes:schedule:)`` allows.
  func reduceLevel(_ level: [NodeID], _ env: inout Environment) throws {
    var keys: [Int: String] = [:]
    var pending: [NodeID] = []
    for id in level {
      guard let cache else {
        pending.append(id)
        continue
      }
      let key = ReductionCache.key(
        id, graph: graph, models: models, stages: stages.identities)
      keys[id.index] = key
      switch cache.lookup(key, elements: count) {
      case .cut(let c)?: env.cuts[id.index] = c
      case .scalar(let v)?: env.scalars[id.index] = v
      case nil: pending.append(id)
      }
    }
    for pass in Self.reductionPasses(pending, of: graph, schedule: schedule) {
      if pass.isSelection {
        let cuts = try sortPrefixes(pass.nodes, env: env, releasingInputs: pass.releasesInputs)
        for (id, cut) in zip(pass.nodes, cuts) {
          env.cuts[id.index] = cut
        }
      } else {
        for (id, v) in zip(pass.nodes, try scalarReductions(pass.nodes, env: env)) {
          env.scalars[id.index] = v
        }
      }
    }
    if let cache {
      for id in pending {
        guard let key = keys[id.index] else { continue }
        if let c = env.cuts[id.index] {
          cache.store(key, .cut(c), elements: count)
        } else {
          cache.store(key, .scalar(env.scalars[id.index]), elements: count)
        }
      }
    }
  }

  /// The scalar reductions `ids` (L1 norms, sums of squares, slerp's cosine), in one pass:
  /// f64 partials per block, combined in block order whatever the thread count.
  func scalarReductions(_ ids: [NodeID], env: Environment) throws -> [Double] {
    let partials = Mutex(
      [[Double]](repeating: [Double](repeating: 0, count: blockCount), count: ids.count))
    let graph = self.graph
    let roots = ReductionPass(nodes: ids, isSelection: false).roots(in: graph)
    try forEachBlock(evaluating: roots) { evaluator, block in
      let r = self.range(of: block)
      var sums: [Double] = []
      for id in ids {
        let node = graph[id]
        let x = evaluator.evaluate(node.inputs[0], block: block, range: r, env: env)
        switch node.op {
        case .l1Norm: sums.append(Kernels.l1(x, r.count))
        case .sumOfSquares: sums.append(Kernels.sumOfSquares(x, r.count))
        case .dot:
          let y = evaluator.evaluate(node.inputs[1], block: block, range: r, env: env)
          var d = 0.0
          for i in 0..<r.count { d += Double(x[i]) * Double(y[i]) }
          sums.append(d)
        case .normalizedDot:
          let y = evaluator.evaluate(node.inputs[1], block: block, range: r, env: env)
          sums.append(
            Kernels.normalizedDot(
              x, y, r.count, Kernels.slerpNorm(env.scalars[node.inputs[2].index]),
              Kernels.slerpNorm(env.scalars[node.inputs[3].index])))
        default: sums.append(0)
        }
      }
      partials.withLock { p in for k in sums.indices { p[k][block] = sums[k] } }
    }
    return partials.withLock { $0.map { $0.reduce(0, +) } }
  }

  /// The sort prefixes `ids`: one pass gathers each input's `|x|` (each block writes only its
  /// own elements), then each prefix is selected, at the same time when there are several.
  ///
  /// When `releasingInputs`, the gather drops the input pages behind it, window by window, and
  /// the selections run with none of them mapped.
  func sortPrefixes(_ ids: [NodeID], env: Environment, releasingInputs: Bool = false) throws
    -> [Cut]
  {
    // Passes whose inputs stay mapped hold no more than their price with their pages kept:
    // their buffers go back to the pool for the next tensor's gather.
    let reusable = !releasingInputs && schedule.releaseWindow == nil
    let buffers = PageBuffer<Float>.many(ids.count, count: max(1, count), reusable: reusable)
    allocated.update { $0.gatherBytes = max($0.gatherBytes, ids.count * max(1, count) * 4) }
    let targets = buffers.map { UnsafeMutableSendablePointer($0.pointer) }
    let inputs = ids.map { graph[$0].inputs[0] }
    let direct = inputs.map { DirectGather(graph, $0, inputs: self.inputs) }
    try forEachBlock(
      evaluating: inputs,
      releasingEvery: releasingInputs ? Self.gatherReleaseWindow : nil
    ) { evaluator, block in
      let r = self.range(of: block)
      for (k, input) in inputs.enumerated() {
        let out = targets[k].pointer + r.lowerBound
        if let d = direct[k] {
          d.run(r, into: out)
          continue
        }
        let x = evaluator.evaluate(input, block: block, range: r, env: env)
        for i in 0..<r.count { out[i] = x[i].magnitude }
      }
    }
    if releasingInputs {
      for input in self.inputs.indices { release(input, upTo: count) }
    }
    let results = Mutex([Cut?](repeating: nil, count: ids.count))
    DispatchQueue.concurrentPerform(iterations: ids.count) { k in
      guard case .sortPrefix(let rank, let descending) = self.graph[ids[k]].op else { return }
      // One selection alone counts its histograms on every thread.
      let cut = Self.prefix(
        of: targets[k].pointer, count: self.count, rank: rank, descending: descending,
        lanes: ids.count == 1 ? self.threads : 1, high: direct[k]?.takeHistogram(),
        release: buffers[k].release, trimsTracked: !reusable)
      results.withLock { $0[k] = cut }
    }
    return results.withLock { $0.map { $0 ?? Cut(kind: .everything) } }
  }

  /// The elements a torch sort of the magnitudes in `values` puts before position `rank`.
  ///
  /// A radix selection finds the magnitude at that position: a histogram of the high 16 bits,
  /// then of the low 16 bits within the chosen bucket. When the position falls between two
  /// different magnitudes, that threshold is the answer. When it splits a run of equal
  /// magnitudes, which of them come first depends on torch's unstable sort, so
  /// ``TorchSortEmulation`` decides, as torch would. `values` is used as scratch. `high` is the
  /// histogram of the magnitudes' high 16 bits when a ``DirectGather`` counted it (with the
  /// kernels, as it is; the Swift path counts its own).
  static func prefix(
    of values: UnsafeMutablePointer<Float>, count: Int, rank: Int, descending: Bool,
    lanes: Int = 1, high: [Int]? = nil, kernels: Bool = Kernels.avx2,
    release: (Range<Int>) -> Void = { _ in }, trimsTracked: Bool = true
  ) -> Cut {
    if rank <= 0 { return Cut(kind: .nothing) }
    if rank >= count { return Cut(kind: .everything) }
    // Ascending position of the boundary: a descending prefix of `rank` is everything above
    // ascending position count − rank.
    let ascendingRank = descending ? count - rank : rank
    if kernels {
      return kernelPrefix(
        of: values, count: count, rank: rank, ascendingRank: ascendingRank,
        descending: descending, lanes: lanes, high: high, release: release,
        trimsTracked: trimsTracked)
    }
    let selection = Self.radixSelect(values, count: count, rank: ascendingRank, lanes: lanes)
    // Ties at magnitude zero are zeros whichever are kept (0·1 and 0·0 are the same zero), so
    // their order cannot change the result.
    if selection.tiesBelow == 0 || selection.threshold == 0 {
      // Exactly the elements below the threshold are below the boundary.
      return Cut(kind: .threshold(selection.threshold, ties: descending, descending: descending))
    }
    let ties = TorchSortEmulation.tiesBefore(
      values, count: count, descending: descending, boundary: rank,
      threshold: selection.threshold, kernels: false, bucket: nil, release: release)
    return Cut(kind: .thresholdWithTies(selection.threshold, descending: descending, ties: ties))
  }

  /// ``prefix(of:count:rank:descending:lanes:high:kernels:release:trimsTracked:)`` by the AVX2
  /// kernels: the radix selection's second pass also complements the keys (for a descending
  /// sort) and lists the keys of the threshold's bucket, from which the equal ones are followed
  /// (`merge_bucket_scan`), so the emulation needs no pass of its own to find them.
  private static func kernelPrefix(
    of values: UnsafeMutablePointer<Float>, count: Int, rank: Int, ascendingRank: Int,
    descending: Bool, lanes: Int, high: [Int]?, release: (Range<Int>) -> Void,
    trimsTracked: Bool
  ) -> Cut {
    let raw = UnsafeMutableRawPointer(values).assumingMemoryBound(to: UInt32.self)
    var below = 0
    let bucket = Self.bin(
      holding: ascendingRank,
      of: high ?? histogram(raw, count: count, lanes: lanes, within: nil), below: &below)
    var low = [UInt32](repeating: 0, count: 65536)
    let listed = merge_bucket_scan(
      raw, count, UInt32(bucket), descending ? 1 : 0, &low,
      TorchSortEmulation.mostFollowed(count))
    defer { merge_bucket_free(listed) }
    let threshold =
      UInt32(bucket) << 16 | UInt32(Self.bin(holding: ascendingRank, of: low, below: &below))
    if ascendingRank == below || threshold == 0 {
      return Cut(kind: .threshold(threshold, ties: descending, descending: descending))
    }
    let ties = TorchSortEmulation.tiesBefore(
      values, count: count, descending: descending, boundary: rank, threshold: threshold,
      kernels: true, bucket: listed, release: release, trimsTracked: trimsTracked)
    return Cut(kind: .thresholdWithTies(threshold, descending: descending, ties: ties))
  }

  /// The magnitude bits at ascending position `rank` of `values` (non-negative floats, whose
  /// bit patterns order as their values), and how many elements equal to it lie below that
  /// position: a histogram of the high 16 bits, then of the low 16 bits within the bucket.
  static func radixSelect(
    _ values: UnsafePointer<Float>, count: Int, rank: Int, lanes: Int = 1
  ) -> (threshold: UInt32, tiesBelow: Int) {
    radixSelect(
      bits: UnsafeRawPointer(values).assumingMemoryBound(to: UInt32.self), count: count,
      rank: rank, lanes: lanes)
  }

  /// The key at ascending position `rank` of the unsigned keys `raw`, and how many keys equal
  /// to it lie below that position.
  static func radixSelect(
    bits raw: UnsafePointer<UInt32>, count: Int, rank: Int, lanes: Int = 1
  ) -> (threshold: UInt32, tiesBelow: Int) {
    var below = 0
    let high = UInt32(
      bin(holding: rank, of: histogram(raw, count: count, lanes: lanes, within: nil), below: &below)
    )
    let second = histogram(raw, count: count, lanes: lanes, within: high)
    let low = UInt32(bin(holding: rank, of: second, below: &below))
    return (high << 16 | low, rank - below)
  }

  /// The bin of a histogram `counts` that holds ascending position `rank`, given the `below`
  /// entries before the histogram's first bin; `below` then counts those before that bin.
  static func bin<Count: BinaryInteger>(holding rank: Int, of counts: [Count], below: inout Int)
    -> Int
  {
    var bin = 0
    while below + Int(counts[bin]) <= rank {
      below += Int(counts[bin])
      bin += 1
    }
    return bin
  }

  /// Counts of the high 16 bits of `raw`, or of the low 16 bits of those whose high bits are
  /// `within`: in `lanes` chunks at once, each with its own counts, summed after (integers,
  /// so the result does not depend on the lanes).
  static func histogram(_ raw: UnsafePointer<UInt32>, count: Int, lanes: Int, within: UInt32?)
    -> [Int]
  {
    // Chunks of at most 2³⁰ elements, so that 32-bit counts cannot overflow.
    let chunks = max(count >= 1 << 20 ? max(1, lanes) : 1, (count + (1 << 30) - 1) >> 30)
    let counts = Mutex([Int](repeating: 0, count: 65536))
    let source = UnsafeSendablePointer(raw)
    DispatchQueue.concurrentPerform(iterations: chunks) { c in
      let raw = source.pointer
      let start = count * c / chunks
      let end = count * (c + 1) / chunks
      // Four interleaved tables: neighbours often fall in the same bucket, and one table would
      // make each increment wait for the previous one.
      let table = HistogramTable.take()
      defer { HistogramTable.giveBack([table]) }
      let local = table.counts
      var i = start
      if let high = within {
        // Few elements lie in the bucket: a branch that is rarely taken costs less than a
        // write of 0 or 1 for every element.
        while i &+ 4 <= end {
          let a = raw[i]
          let b = raw[i &+ 1]
          let c = raw[i &+ 2]
          let d = raw[i &+ 3]
          if (a >> 16 == high) || (b >> 16 == high) || (c >> 16 == high) || (d >> 16 == high) {
            if a >> 16 == high { local[Int(a & 0xFFFF)] &+= 1 }
            if b >> 16 == high { local[1 << 16 | Int(b & 0xFFFF)] &+= 1 }
            if c >> 16 == high { local[2 << 16 | Int(c & 0xFFFF)] &+= 1 }
            if d >> 16 == high { local[3 << 16 | Int(d & 0xFFFF)] &+= 1 }
          }
          i &+= 4
        }
        while i < end {
          if raw[i] >> 16 == high { local[Int(raw[i] & 0xFFFF)] &+= 1 }
          i &+= 1
        }
      } else {
        while i &+ 4 <= end {
          local[Int(raw[i] >> 16)] &+= 1
          local[1 << 16 | Int(raw[i &+ 1] >> 16)] &+= 1
          local[2 << 16 | Int(raw[i &+ 2] >> 16)] &+= 1
          local[3 << 16 | Int(raw[i &+ 3] >> 16)] &+= 1
          i &+= 4
        }
        while i < end {
          local[Int(raw[i] >> 16)] &+= 1
          i &+= 1
        }
      }
      counts.withLock { total in
        table.drain(into: &total)
      }
    }
    return counts.withLock { $0 }
  }
}

/// A read-only pointer shared with workers; the owner keeps the memory alive until they return.
struct UnsafeSendablePointer<T>: @unchecked Sendable {
  let pointer: UnsafePointer<T>
  init(_ pointer: UnsafePointer<T>) { self.pointer = pointer }
}

/// Worker evaluators, one per worker slot: worker `w` of a pass uses only `items[w]`.
final class EvaluatorPool: @unchecked Sendable {
  let items: [BlockEvaluator]
  init(_ items: [BlockEvaluator]) { self.items = items }
}

/// How the executor trades memory for speed.
public struct Schedule: Sendable, Equatable {
  /// Whether the next tensor's inputs are mapped ahead while this one computes.
  public var prefetch = true
  /// Bytes of the inputs of the tensors after the next read into the page cache ahead (with
  /// `prefetch`): not mapped, so not resident in this process.
  public var readAheadBytes = 512 << 20
  /// Blocks per window when input pages are released as the passes go (nil: released when the
  /// tensor is done).
  public var releaseWindow: Int?
  /// Most bytes the selections of one tensor may hold at once to run side by side.
  public var concurrentSelectionBytes = 256 << 20
  /// Whether two tensors are computed at once where their memory allows (``SideBySide``).
  public var sideBySide = true

  /// The default: fastest.
  public init() {}

  /// The smallest schedule: nothing read ahead, input pages released every 64 blocks (4 Mi
  /// elements), one selection and one tensor at a time.
  public static let small: Schedule = {
    var s = Schedule()
    s.prefetch = false
    s.releaseWindow = 64
    s.concurrentSelectionBytes = 0
    s.sideBySide = false
    return s
  }()
}

/// Per-tensor results of reductions, indexed by node.
struct Environment: Sendable {
  var scalars: [Double]
  var cuts: [Cut?]

  init(nodeCount: Int) {
    scalars = [Double](repeating: 0, count: nodeCount)
    cuts = [Cut?](repeating: nil, count: nodeCount)
  }
}
