import MergeCompiler
import Synchronization

/// The buffers the executor allocates to compute one tensor, beyond its mapped inputs.
///
/// ``TensorExecutor/predictedFootprint(of:threads:schedule:known:)`` says what they will be,
/// from the graph alone and the executor's own rules; `merge plan` prices memory from that, and
/// a test runs the parity recipes and checks that the executor allocated exactly that.
public struct TensorFootprint: Sendable, Equatable {
  /// The output tensor.
  public var tensor: String
  /// Elements per block.
  public var blockSize: Int
  /// Worker threads of each pass.
  public var workers: Int
  /// The most bytes the workers' block buffers take in one pass (the workers together).
  public var evaluatorBytes = 0
  /// The most bytes of gathered magnitudes held at once for selections.
  public var gatherBytes = 0
  /// The decoded inputs, the result and its encoded bytes, for a whole-tensor kernel.
  public var wholeTensorBytes = 0
  /// The LoRA factors of adapted inputs, decoded to f32 (`rank · (rows + columns)` each).
  public var adapterBytes = 0

  /// An empty footprint of a tensor computed in `blockSize` blocks by `workers` threads.
  public init(tensor: String, blockSize: Int, workers: Int) {
    self.tensor = tensor
    self.blockSize = blockSize
    self.workers = workers
  }
}

/// The footprints of a run's tensors, in the order they were computed.
public final class FootprintLog: Sendable {
  private let entries = Mutex<[TensorFootprint]>([])

  /// An empty log.
  public init() {}

  /// Every footprint recorded so far.
  public var footprints: [TensorFootprint] { entries.withLock { $0 } }

  func append(_ footprint: TensorFootprint) {
    entries.withLock { $0.append(footprint) }
  }
}

/// A tensor's footprint as its computation allocates, shared with the workers.
final class FootprintCounter: Sendable {
  private let state: Mutex<TensorFootprint>

  init(_ initial: TensorFootprint) {
    state = Mutex(initial)
  }

  /// The footprint so far.
  var value: TensorFootprint { state.withLock { $0 } }

  /// Changes the footprint.
  func update(_ body: (inout TensorFootprint) -> Void) {
    state.withLock { body(&$0) }
  }
}

/// One pass over a tensor's blocks that computes reductions: the scalar reductions of a level
/// together, or sort prefixes (together while their memory allows).
struct ReductionPass: Equatable {
  /// The reductions computed.
  var nodes: [NodeID]
  /// Whether they are selections (sort prefixes) rather than scalars.
  var isSelection: Bool

  /// The nodes the pass evaluates block by block: what its reductions read.
  func roots(in graph: TensorGraph) -> [NodeID] {
    nodes.flatMap { id -> [NodeID] in
      let node = graph[id]
      switch node.op {
      case .normalizedDot, .dot: return Array(node.inputs.prefix(2))
      default: break
      }
      return [node.inputs[0]]
    }
  }
}

extension TensorExecutor {
  /// Whether `selections` sort prefixes of a tensor of `count` elements share one pass (and
  /// then run side by side): they hold up to 8 bytes per element while they work, so only
  /// while that stays under the schedule's limit.
  static func selectionsShareAPass(count: Int, selections: Int, schedule: Schedule) -> Bool {
    selections > 1 && count * 8 * selections <= schedule.concurrentSelectionBytes
  }

  /// The passes that compute `pending`, reductions of one level none of which reads another:
  /// the scalar reductions in one pass, then the sort prefixes in one pass or one each.
  static func reductionPasses(
    _ pending: [NodeID], of graph: TensorGraph, schedule: Schedule
  ) -> [ReductionPass] {
    let scalars = pending.filter { graph[$0].op.kind == .scalarReduction }
    let prefixes = pending.filter { graph[$0].op.kind == .selection }
    var passes: [ReductionPass] = []
    if !scalars.isEmpty { passes.append(ReductionPass(nodes: scalars, isSelection: false)) }
    if selectionsShareAPass(count: graph.plan.count, selections: prefixes.count, schedule: schedule)
    {
      passes.append(ReductionPass(nodes: prefixes, isSelection: true))
    } else {
      passes += prefixes.map { ReductionPass(nodes: [$0], isSelection: true) }
    }
    return passes
  }

  /// The bytes of the decoded LoRA factors of `plan`'s adapted inputs.
  static func adapterBytes(_ plan: TensorPlan) -> Int {
    plan.inputs.reduce(0) { total, input in
      guard case .delta(let d)? = input.adapter else { return total }
      return total + d.rank * ((input.info.shape.first ?? 1) + (input.info.shape.last ?? 1)) * 4
    }
  }

  /// What computing `graph` will allocate with `threads` workers and `schedule`, the
  /// reductions in `known` (node indices) being taken from the cache.
  static func predictedFootprint(
    of graph: TensorGraph, threads: Int, schedule: Schedule, known: Set<Int> = []
  ) -> TensorFootprint {
    let count = graph.plan.count
    let blockSize = Self.blockSize(of: graph)
    let workers = Self.workers(
      threads: max(1, threads), blocks: max(1, (count + blockSize - 1) / blockSize))
    var footprint = TensorFootprint(tensor: graph.plan.name, blockSize: blockSize, workers: workers)
    footprint.adapterBytes = adapterBytes(graph.plan)
    let output = graph[graph.output]
    if case .copyBytes = output.op { return footprint }
    if case .wholeTensor = graph[output.inputs[0]].op {
      let inputs = graph[output.inputs[0]].inputs.count
      footprint.wholeTensorBytes =
        (inputs + 1) * count * 4 + count * graph.plan.outputDType.byteSize
      return footprint
    }
    func evaluators(_ roots: [NodeID]) -> Int {
      workers * BlockEvaluator.Layout(graph: graph, roots: roots).bytes(blockSize: blockSize)
    }
    footprint.evaluatorBytes = evaluators([output.inputs[0]])
    for level in reductionLevels(graph) {
      let pending = level.filter { !known.contains($0.index) }
      for pass in reductionPasses(pending, of: graph, schedule: schedule) {
        footprint.evaluatorBytes = max(footprint.evaluatorBytes, evaluators(pass.roots(in: graph)))
        if pass.isSelection {
          footprint.gatherBytes = max(footprint.gatherBytes, pass.nodes.count * max(1, count) * 4)
        }
      }
    }
    return footprint
  }
}
