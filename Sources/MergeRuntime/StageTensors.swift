import MergeCompiler
import MergeModel
import Synchronization

/// A tensor of an intermediate stage.
struct StageKey: Hashable, Sendable {
  var stage: String
  var tensor: String
}

/// One computation of a run: an output tensor, or a tensor of an intermediate stage computed
/// where a later one first reads it.
struct ProgramStep: Sendable {
  /// The stage the tensor belongs to; nil for an output tensor.
  var stage: String?
  /// Its graph.
  var graph: TensorGraph
  /// The output tensor an output step writes: the graph's, or the name a passthrough gives the
  /// stage tensor whose graph this is (copied to the output without being held).
  var name: String
  /// The models its plan's inputs index.
  var models: [ResolvedModel]
  /// The stage tensors no later step reads, freed once this step is done.
  var releases: [StageKey]
  /// Bytes of stage tensors held in memory while this step computes (its own result
  /// included, for a stage tensor).
  var heldBytes: Int

  /// Whether the next step's inputs are read ahead while this one computes: not while a stage
  /// tensor is computed, when the stage tensors it reads and its own are held in memory (and
  /// the next step reads most of the same inputs anyway).
  var readsAhead: Bool { stage == nil }

  /// The key of the tensor a stage step computes.
  var key: StageKey? { stage.map { StageKey(stage: $0, tensor: graph.plan.name) } }
  /// Bytes of the tensor as stored.
  var outputBytes: Int { graph.plan.count * graph.plan.outputDType.byteSize }
}

/// The order a compiled program runs in, one place for the runner and the cost model.
///
/// Output tensors in ``processingOrder(_:_:)``; before each, the stage tensors it reads that are
/// not in memory yet, each after the stage tensors it reads in turn (depth first). A stage
/// tensor stays in memory until its last reader is done. An output tensor that is a copy of a
/// stage tensor nothing else reads (a passthrough of a stage's layers) is that tensor's own
/// graph, written straight to the output: the same bytes, never held. With
/// `everyStageTensor` (`--intermediates`), the stage tensors nothing reads are computed at the
/// end.
func programSteps(_ merge: CompiledMerge, everyStageTensor: Bool = false) -> [ProgramStep] {
  var readers: [StageKey: Int] = [:]
  func stageInputs(_ graph: TensorGraph, _ models: [ResolvedModel]) -> [StageKey] {
    var keys: [StageKey] = []
    for input in graph.plan.inputs {
      guard let stage = models[input.model].stage else { continue }
      let key = StageKey(stage: stage, tensor: input.tensor)
      if !keys.contains(key) { keys.append(key) }
    }
    return keys
  }
  let stages = Dictionary(merge.stages.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
  for g in merge.graphs {
    for k in stageInputs(g, merge.plan.models) { readers[k, default: 0] += 1 }
  }
  for stage in merge.stages {
    for g in stage.graphs.values {
      for k in stageInputs(g, stage.plan.models) { readers[k, default: 0] += 1 }
    }
  }
  var steps: [ProgramStep] = []
  var held: [StageKey: Int] = [:]
  var done = Set<StageKey>()
  var heldBytes = 0
  /// The stage tensor an output copies, when nothing else reads it (and it is not written to
  /// an intermediate folder).
  func forwarded(_ graph: TensorGraph, _ models: [ResolvedModel]) -> StageKey? {
    guard !everyStageTensor, case .copyBytes = graph[graph.output].op,
      let input = graph.plan.inputs.first, graph.plan.inputs.count == 1,
      input.adapter == nil, input.alignment == nil, let stage = models[input.model].stage
    else { return nil }
    let key = StageKey(stage: stage, tensor: input.tensor)
    return readers[key] == 1 && stages[stage]?.graphs[input.tensor] != nil ? key : nil
  }
  func visit(_ graph: TensorGraph, _ models: [ResolvedModel], stage: String?, name: String? = nil) {
    if stage == nil, let key = forwarded(graph, models), let s = stages[key.stage],
      let g = s.graphs[key.tensor]
    {
      readers[key] = 0
      done.insert(key)
      visit(g, s.plan.models, stage: nil, name: name ?? graph.plan.name)
      return
    }
    let inputs = stageInputs(graph, models)
    for k in inputs where !done.contains(k) {
      guard let s = stages[k.stage], let g = s.graphs[k.tensor] else { continue }
      visit(g, s.plan.models, stage: k.stage)
    }
    var step = ProgramStep(
      stage: stage, graph: graph, name: name ?? graph.plan.name, models: models, releases: [],
      heldBytes: heldBytes)
    if let key = step.key {
      done.insert(key)
      step.heldBytes += step.outputBytes
      held[key] = step.outputBytes
      heldBytes += step.outputBytes
    }
    var freed = inputs
    if let key = step.key { freed.append(key) }
    for k in freed {
      if k != step.key { readers[k, default: 0] -= 1 }
      guard readers[k, default: 0] <= 0, let bytes = held.removeValue(forKey: k) else { continue }
      heldBytes -= bytes
      step.releases.append(k)
    }
    steps.append(step)
  }
  for index in processingOrder(merge.graphs, merge.plan.models) {
    visit(merge.graphs[index], merge.plan.models, stage: nil)
  }
  if everyStageTensor {
    for stage in merge.stages {
      for tensor in stage.plan.tensors {
        let key = StageKey(stage: stage.name, tensor: tensor.name)
        guard !done.contains(key), let g = stage.graphs[tensor.name] else { continue }
        visit(g, stage.plan.models, stage: stage.name)
      }
    }
  }
  return steps
}

/// The tensors of a run's intermediate stages that are in memory, and the identity of every
/// stage tensor's content for the reduction cache.
///
/// A stage tensor is held as its stage stores it (rounded to the stage's `out_dtype`), so a
/// later stage reads exactly what it would read from the stage's folder written to disk.
final class StageTensors: Sendable {
  private let held = Mutex<[StageKey: MappedFile]>([:])
  /// Each stage tensor's content identity: what computes it, and from what.
  let identities: [StageKey: String]

  /// The store for `merge`, empty; each stage tensor's identity is worked out now (headers
  /// and file status only).
  init(_ merge: CompiledMerge) {
    var identities: [StageKey: String] = [:]
    // Stages come after the stages they read, so each identity can use earlier ones.
    for stage in merge.stages {
      for (name, graph) in stage.graphs.sorted(by: { $0.key < $1.key }) {
        let content = ReductionCache.key(
          graph.output, graph: graph, models: stage.plan.models, stages: identities)
        identities[StageKey(stage: stage.name, tensor: name)] = "stage[\(content)]"
      }
    }
    self.identities = identities
  }

  /// A store for a merge of one stage.
  static let none = StageTensors(identities: [:])

  private init(identities: [StageKey: String]) { self.identities = identities }

  /// Keeps `memory` as the tensor `key`.
  func keep(_ key: StageKey, _ memory: MappedFile) {
    held.withLock { $0[key] = memory }
  }

  /// Frees the tensor `key`'s memory (once no view of it is left).
  func release(_ key: StageKey) {
    _ = held.withLock { $0.removeValue(forKey: key) }
  }

  /// A view of stage `stage`'s tensor `info`, which must be in memory.
  func view(stage: String, _ info: TensorInfo) throws(ModelError) -> TensorView {
    guard let memory = held.withLock({ $0[StageKey(stage: stage, tensor: info.name)] }),
      memory.bytes.count == info.byteCount
    else {
      throw .missingTensor(path: ProducedModel.path(ofStage: stage), tensor: info.name)
    }
    return TensorView(info: info, memory: memory)
  }
}
