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
  /// Whether the pass drops the input pages behind it as it goes, and all of them when done,
  /// so that its selections work with no input mapped (the final pass maps them again).
  var releasesInputs = false

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
  /// Blocks per window of a pass that releases the inputs behind it in the default schedule.
  static let gatherReleaseWindow = 64

  /// The most bytes one sort prefix of `count` elements holds while it works: the magnitudes
  /// (4 bytes per element) and the first partition's bitsets; after it, the keys and indices
  /// of the side that straddles the boundary (8 bytes for about two thirds of the elements,
  /// since the boundary is where the larger side is).
  static func selectionBytes(count: Int) -> Int { count * 16 / 3 + count / 8 }

  /// How the `selections` sort prefixes of a tensor of `count` elements, whose inputs map
  /// `inputBytes`, are grouped into passes: how many share each pass, and whether those passes
  /// release the inputs.
  ///
  /// They all share one pass while they hold no more than the schedule's limit. Otherwise, in
  /// the default schedule, groups of them share passes that drop the inputs' pages (mapped again
  /// by the final pass), as many as hold no more than one selection beside the mapped inputs,
  /// which is what one at a time holds: the tensor's peak does not rise, and the replays, one
  /// thread's work each, run on two cores. Otherwise one at a time.
  static func selectionGroups(
    count: Int, selections: Int, inputBytes: Int, schedule: Schedule
  ) -> (size: Int, releasesInputs: Bool) {
    guard selections > 1 else { return (1, false) }
    let one = max(1, selectionBytes(count: count))
    if one * selections <= schedule.concurrentSelectionBytes { return (selections, false) }
    guard schedule.releaseWindow == nil, schedule.concurrentSelectionBytes > 0 else {
      return (1, false)
    }
    let size = min(selections, 1 + inputBytes / one)
    return size > 1 ? (size, true) : (1, false)
  }

  /// The passes that compute `pending`, reductions of one level none of which reads another:
  /// the scalar reductions in one pass, then the sort prefixes in groups
  /// (``selectionGroups(count:selections:inputBytes:schedule:)``).
  static func reductionPasses(
    _ pending: [NodeID], of graph: TensorGraph, schedule: Schedule
  ) -> [ReductionPass] {
    let scalars = pending.filter { graph[$0].op.kind == .scalarReduction }
    let prefixes = pending.filter { graph[$0].op.kind == .selection }
    var passes: [ReductionPass] = []
    if !scalars.isEmpty { passes.append(ReductionPass(nodes: scalars, isSelection: false)) }
    let groups = selectionGroups(
      count: graph.plan.count, selections: prefixes.count,
      inputBytes: graph.plan.inputs.reduce(0) { $0 + $1.info.byteCount }, schedule: schedule)
    var start = 0
    while start < prefixes.count {
      let end = min(prefixes.count, start + groups.size)
      passes.append(
        ReductionPass(
          nodes: Array(prefixes[start..<end]), isSelection: true,
          releasesInputs: groups.releasesInputs))
      start = end
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
