import Dispatch
import MergeCompiler
import MergeModel
import MergeRecipe
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// How a compiled merge runs (how it is compiled is ``CompileOptions``).
public struct RunOptions: Sendable {
  /// Worker threads.
  public var threads: Int
  /// Most bytes per output shard (0: one shard).
  public var shardSize: Int
  /// Called after each tensor is written.
  public var progress: (@Sendable (RunProgress) -> Void)?
  /// Where reduction results are kept across runs (nil: recompute everything).
  public var cache: ReductionCache?
  /// How memory is traded for speed (`merge run --max-memory` picks the smaller one).
  public var schedule = Schedule()
  /// Where to record what each tensor's computation allocated (nil: nowhere).
  public var footprints: FootprintLog?
  /// Whether an existing merge output at the destination may be replaced (`--force`).
  public var replaceExisting = false
  /// Which files besides the weights and config.json the output holds.
  public var contents = MergeRunner.OutputContents()
  /// Set by a signal handler to stop the run.
  public var cancellation: Cancellation?
  /// Where each intermediate stage of a multi-stage recipe is also written (`--intermediates`).
  ///
  /// Each named stage becomes the model folder `DIR/<name>`, as mergekit-multi's `-I` writes
  /// it; nil writes only the output. The merge must be compiled with
  /// ``CompileOptions/allStageTensors``.
  public var intermediates: String?
  /// Which part of the output this run computes (`--partition I/N`); nil: all of it.
  public var partition: Partition?
  /// Every shard's `__metadata__` (``Provenance/metadata(recipeText:seed:lock:)`` for `merge
  /// run`; `format: pt` alone by default).
  public var metadata = ShardLayout.defaultMetadata

  /// Creates options.
  public init(
    threads: Int, shardSize: Int = ShardLayout.defaultShardSize,
    progress: (@Sendable (RunProgress) -> Void)? = nil
  ) {
    self.threads = threads
    self.shardSize = shardSize
    self.progress = progress
  }
}

/// How far a run has got.
public struct RunProgress: Sendable {
  /// Tensors written.
  public var tensorsDone: Int
  /// Tensors in all.
  public var tensorCount: Int
  /// Bytes of tensor data written.
  public var bytesDone: Int
  /// Bytes of tensor data in all.
  public var totalBytes: Int
  /// Seconds since the run started.
  public var elapsed: Double
}

/// What a finished run wrote.
public struct RunSummary: Sendable {
  /// Tensors written.
  public var tensorCount: Int
  /// Output shard files.
  public var shardCount: Int
  /// Bytes of the shard files.
  public var bytesWritten: Int
  /// Seconds the run took.
  public var seconds: Double
}

/// Why a run failed.
///
/// The output folder is then left as it was.
public enum RunError: Error, Sendable, CustomStringConvertible {
  /// Reading an input or writing the output failed.
  case model(ModelError)
  /// A tensor could not be computed.
  case execution(ExecutionError)
  /// The run was asked to stop (``Cancellation``), by `signal`.
  case interrupted(signal: Int32)

  public var description: String {
    switch self {
    case .model(let e): return e.description
    case .execution(let e): return e.description
    case .interrupted(let signal): return "interrupted by signal \(signal)"
    }
  }

  /// The failure as a diagnostic of `merge`'s recipe, pointing at the slice or model list the
  /// failed tensor comes from.
  public func diagnostic(for merge: CompiledMerge, file: String) -> Diagnostic {
    switch self {
    case .model(let e):
      // About an input or output file, not a place in the recipe.
      return Diagnostic(.ioFailed(e))
    case .execution(let e):
      let origin = merge.plan.tensors.first { $0.name == e.tensor }?.origin
      return Diagnostic(.executionFailed(e), file: file, at: origin)
    case .interrupted(let signal):
      return Diagnostic(.interrupted(signal))
    }
  }
}

extension Diagnostic.Message {
  fileprivate static func ioFailed(_ error: ModelError) -> Self {
    if case .outputRefused = error { return Self("output-refused", error.description) }
    return Self("io-failed", error.description)
  }
  fileprivate static func executionFailed(_ error: ExecutionError) -> Self {
    Self("execution-failed", error.description)
  }
  fileprivate static func interrupted(_ signal: Int32) -> Self {
    let name = [2: "SIGINT", 15: "SIGTERM", 1: "SIGHUP"][signal] ?? "signal \(signal)"
    return Self("interrupted", "interrupted by \(name); the output was not written")
  }
}

/// Runs a compiled merge: executes each tensor's graph, writes the output folder atomically.
public enum MergeRunner {
  /// Runs `merge` into the model folder `output`.
  ///
  /// Everything that can be checked is checked before the first tensor: the output folder (not
  /// inside an input, nothing there that is not a previous merge output, not locked by
  /// another run) and the space its shards need.
  public static func run(_ merge: CompiledMerge, output: String, options: RunOptions)
    throws(RunError) -> RunSummary
  {
    if let partition = options.partition {
      return try runPartition(merge, output: output, options: options, partition: partition)
    }
    let start = DispatchTime.now().uptimeNanoseconds
    releaseFreedMemory()
    let layout = Self.layout(merge.plan, options: options)
    let folder: OutputFolder
    let writer: SafetensorsWriter
    var stageOutputs: StageOutputs?
    do {
      try requireOutsideInputs(output, merge.inputModels)
      if let directory = options.intermediates {
        stageOutputs = try StageOutputs(merge, directory: directory, options: options)
      }
      folder = try OutputFolder(
        destination: output, existing: options.replaceExisting ? .replaceMergeOutput : .refuse)
      writer = try SafetensorsWriter(folder: folder, layout: layout)
    } catch {
      stageOutputs?.discard()
      throw .model(error)
    }
    do {
      try computeTensors(
        merge, layout: layout, writer: writer, stageOutputs: stageOutputs, options: options,
        start: start)
      try writer.finish()
      try write(
        Self.sideFiles(
          merge.plan, recipeText: merge.recipeText, seed: merge.seed, layout: layout,
          contents: options.contents), to: folder)
      try stageOutputs?.finish()
      try folder.commit()
    } catch let error as RunError {
      folder.discard()
      stageOutputs?.discard()
      throw error
    } catch let error as ModelError {
      folder.discard()
      stageOutputs?.discard()
      throw .model(error)
    } catch {
      folder.discard()
      stageOutputs?.discard()
      throw .execution(ExecutionError(tensor: "", reason: "\(error)"))
    }
    return RunSummary(
      tensorCount: merge.graphs.count, shardCount: layout.shards.count,
      bytesWritten: layout.totalFileSize,
      seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
  }

  /// Writes `files` into `folder`.
  static func write(_ files: [(String, FileContent)], to folder: OutputFolder) throws(ModelError) {
    for (name, content) in files {
      switch content {
      case .bytes(let bytes): try folder.write(name, bytes: bytes)
      case .copy(let source):
        try FileSystem.copy(source, to: folder.path(of: name), limit: ModelFolder.sideFileLimit)
      }
    }
  }

  /// Computes every tensor in the program's order (``programSteps(_:everyStageTensor:)``),
  /// two side by side where ``SideBySide`` allows it, and writes each output tensor; a stage
  /// tensor is kept in memory until its last reader is done (and written to its intermediate
  /// folder, when there is one).
  static func computeTensors(
    _ merge: CompiledMerge, layout: ShardLayout, writer: SafetensorsWriter,
    stageOutputs: StageOutputs? = nil, options: RunOptions, start: UInt64
  ) throws(RunError) {
    defer { GatherPages.shared.empty() }
    let byteCounts = Dictionary(
      layout.shards.flatMap(\.tensors).map { ($0.name, $0.byteCount) },
      uniquingKeysWith: { a, _ in a })
    let totalBytes = byteCounts.values.reduce(0, +)
    let done = Mutex<(tensors: Int, bytes: Int)>((0, 0))
    let stages = StageTensors(merge)
    let steps = programSteps(merge, everyStageTensor: stageOutputs != nil)
    let sideBySide = SideBySide(steps, merge: merge, options: options)
    let stageWriters = stageOutputs?.writers
    let readAhead = ReadAhead(steps, window: options.schedule.readAheadBytes)
    defer { readAhead.finish() }
    let release = InputRelease(workingSet: sideBySide.workingSet, budget: sideBySide.budget)
    defer { release.flush() }
    if options.schedule.prefetch, let first = steps.first, first.readsAhead {
      // Its reads queued before those of the tensors after it.
      readAhead.issue(first)
    }
    try sideBySide.forEachStep(steps.count, cancellation: options.cancellation) {
      i throws(RunError) in
      let step = steps[i]
      // Pages kept from earlier steps go first if this one and its next would pass the budget.
      release.makeRoom(step: i)
      // Map the next tensor's inputs while this one computes, and read those further ahead.
      if options.schedule.prefetch && step.readsAhead && i + 1 < steps.count {
        let next = steps[i + 1]
        GatherPages.shared.makeRoom(readAhead.mapped[i + 1] - readAhead.mapped[i])
        advise(next.graph.plan, next.models, .willNeed)
        for j in readAhead.beyond(i + 1) { readAhead.issue(steps[j]) }
      }
      let name = step.name
      if let key = step.key {
        let memory: MappedFile
        do throws(ModelError) {
          memory = try MappedFile(
            anonymous: step.outputBytes, name: ProducedModel.path(ofStage: key.stage) + "/" + name)
        } catch {
          throw .model(error)
        }
        let stageWriter = stageWriters?[key.stage]
        try compute(step.graph, models: step.models, stages: stages, options: options) {
          offset, bytes in
          memory.fill(at: offset, with: bytes)
          try stageWriter?.write(tensor: name, byteOffset: offset, bytes: bytes)
        }
        release.add(inputViews(step.graph.plan, step.models), step: i)
        stages.keep(key, memory)
      } else {
        try compute(step.graph, models: step.models, stages: stages, options: options) {
          offset, bytes in
          try writer.write(tensor: name, byteOffset: offset, bytes: bytes)
        }
        release.add(inputViews(step.graph.plan, step.models), step: i)
        writer.startWriting(tensor: name, byteCount: byteCounts[name] ?? 0)
        let (tensorsDone, bytesDone) = done.withLock {
          $0.tensors += 1
          $0.bytes += byteCounts[name] ?? 0
          return $0
        }
        options.progress?(
          RunProgress(
            tensorsDone: tensorsDone, tensorCount: merge.graphs.count, bytesDone: bytesDone,
            totalBytes: totalBytes,
            elapsed: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9))
      }
      for key in step.releases { stages.release(key) }
    }
  }

  /// Which steps' inputs are read into the page cache ahead of the next one's.
  ///
  /// The one after the next, and as many after it as `window` bytes hold, each once. A large
  /// tensor after many small ones (a model's head after its last layers) is then read while
  /// they compute, not after them. The pages are not mapped, so not resident in this process.
  final class ReadAhead: Sendable {
    /// Bytes each step maps from files.
    let mapped: [Int]
    private let window: Int
    /// The last step read ahead.
    private let last = Mutex(0)
    /// Where the requests are made, in order: one waits while the disk's queue is full, which
    /// a step's computation should not.
    private let queue = DispatchQueue(label: "merge.read-ahead")

    convenience init(_ steps: [ProgramStep], window: Int) {
      self.init(
        mapped: steps.map { MergeCost.mappedBytes($0.graph, models: $0.models) }, window: window)
    }

    /// Read-ahead of steps that map `mapped` bytes each.
    init(mapped: [Int], window: Int) {
      self.mapped = mapped
      self.window = window
    }

    /// The steps after `next` to read ahead now that `next` is mapped: the one after it, and
    /// those after that whose inputs fit in the window with the ones before them; each once.
    func beyond(_ next: Int) -> Range<Int> {
      last.withLock { last in
        var end = next + 1
        var bytes = 0
        while end < mapped.count && (end == next + 1 || bytes + mapped[end] <= window) {
          bytes += mapped[end]
          end += 1
        }
        let start = max(last + 1, next + 1)
        last = max(last, end - 1)
        return start..<max(start, end)
      }
    }

    /// Asks for `step`'s inputs to be read into the page cache, after those asked before.
    func issue(_ step: ProgramStep) {
      queue.async { advise(step.graph.plan, step.models, .readAhead) }
    }

    /// Waits until every request has been made.
    func finish() { queue.sync {} }
  }

  /// Input pages dropped from the process in batches, not tensor by tensor.
  ///
  /// Dropping pages from a mapping makes the kernel flush the TLB of every core that runs one
  /// of the process's threads (an interrupt to each, a VM exit under virtualization): dropped
  /// after each tensor, those flushes took 9% of the CPU time of a 56M merge's many small layer
  /// tensors (`perf`). So a step's input pages stay mapped while the bytes kept and the working sets of
  /// the steps around it stay within ``SideBySide/budget``, the most one step holds (so the
  /// run's peak does not grow), then all are dropped together: a file's adjacent ranges in one
  /// call. The bound is checked when a step is done, and when one starts, before it maps its
  /// own inputs and the next step's.
  final class InputRelease: Sendable {
    /// Bytes each step may leave mapped for later (none when steps run one at a time, the
    /// small schedules, whose budget is 0).
    let allowance: [Int]
    private let pending = Mutex<(bytes: Int, views: [TensorView])>((0, []))

    /// Batches for steps of working sets `workingSet` (``SideBySide/workingSet``) under
    /// `budget`.
    ///
    /// Around step `i`, four steps may hold their working sets: the one before it may still
    /// run beside it (``SideBySide``), and the step after it runs beside it while mapping its
    /// own next.
    init(workingSet: [Int], budget: Int) {
      allowance = workingSet.indices.map { i in
        let around = ((i - 1)..<(i + 3)).clamped(to: workingSet.indices)
        return max(0, budget - around.reduce(0) { $0 + workingSet[$1] })
      }
    }

    /// Step `step` is done with `views`; returns what it dropped.
    ///
    /// They are dropped now, with all kept before, if what is kept would exceed the step's
    /// allowance.
    @discardableResult
    func add(_ views: [TensorView], step: Int) -> [TensorView] {
      let bytes = views.reduce(0) { $0 + $1.bytes.count }
      return dropIfOver(step) {
        $0.bytes += bytes
        $0.views += views
      }
    }

    /// Step `step` is about to map its inputs and the next step's; returns what it dropped.
    ///
    /// What is kept is dropped first if it exceeds the step's allowance (a large step after
    /// many small ones).
    @discardableResult
    func makeRoom(step: Int) -> [TensorView] { dropIfOver(step) { _ in } }

    /// Changes what is kept by `change`, then drops all of it if it exceeds step `step`'s
    /// allowance; what was dropped.
    private func dropIfOver(
      _ step: Int, _ change: (inout (bytes: Int, views: [TensorView])) -> Void
    ) -> [TensorView] {
      let due = pending.withLock { p -> [TensorView] in
        change(&p)
        guard p.bytes > allowance[step] else { return [] }
        defer { p = (0, []) }
        return p.views
      }
      Self.drop(due)
      return due
    }

    /// Drops everything kept.
    func flush() {
      Self.drop(
        pending.withLock { p in
          defer { p = (0, []) }; return p.views
        })
    }

    /// Drops `views`' pages, contiguous ranges of one file in one call.
    static func drop(_ views: [TensorView]) {
      var byFile: [ObjectIdentifier: (MappedFile, [Range<Int>])] = [:]
      for view in views {
        byFile[ObjectIdentifier(view.file), default: (view.file, [])].1.append(view.fileRange)
      }
      for (file, ranges) in byFile.values {
        for range in coalesced(ranges) { file.dontNeed(range) }
      }
    }

    /// `ranges` sorted, those that touch or overlap joined.
    static func coalesced(_ ranges: [Range<Int>]) -> [Range<Int>] {
      var joined: [Range<Int>] = []
      for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) where !range.isEmpty {
        if let last = joined.last, range.lowerBound <= last.upperBound {
          joined[joined.count - 1] = last.lowerBound..<max(last.upperBound, range.upperBound)
        } else {
          joined.append(range)
        }
      }
      return joined
    }
  }

  /// Computes one tensor, handing its bytes to `write` (its input pages stay mapped:
  /// ``InputRelease`` drops them).
  static func compute(
    _ graph: TensorGraph, models: [ResolvedModel], stages: StageTensors, options: RunOptions,
    write: @escaping @Sendable (Int, UnsafeRawBufferPointer) throws -> Void
  ) throws(RunError) {
    do {
      let executor = try TensorExecutor(
        graph: graph, models: models, threads: options.threads, cache: options.cache,
        schedule: options.schedule, cancellation: options.cancellation, stages: stages)
      try executor.run(write: write)
      options.footprints?.append(executor.footprint)
    } catch let e as ExecutionError {
      throw .execution(e)
    } catch let e as ModelError {
      throw .model(e)
    } catch let e as Interrupted {
      throw .interrupted(signal: e.signal)
    } catch {
      throw .execution(ExecutionError(tensor: graph.plan.name, reason: "\(error)"))
    }
  }

  /// Throws unless `output` lies outside every input model's folder (and holds none).
  static func requireOutsideInputs(_ output: String, _ models: [ResolvedModel]) throws(ModelError) {
    var trimmed = output
    while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
    let parent = FileSystem.directoryName(trimmed)
    guard let parentReal = FileSystem.realPath(parent) else { throw .notFound(path: parent) }
    let name = trimmed.split(separator: "/").last.map(String.init) ?? trimmed
    let target = FileSystem.join(parentReal, name)
    for m in models where m.stage == nil {
      guard let input = FileSystem.realPath(m.path) else { continue }
      if target == input || target.hasPrefix(input + "/") || input.hasPrefix(target + "/") {
        throw .outputRefused(
          path: output,
          reason: "it is or holds the input model folder '\(m.reference.description)'")
      }
    }
  }
}

extension MergeRunner {
  /// The output's shards.
  public static func layout(_ plan: MergePlan, options: RunOptions) -> ShardLayout {
    ShardLayout(
      tensors: plan.outputSpecs, shardSize: options.shardSize, metadata: options.metadata
    )
  }

  /// Which optional files a merge writes, as mergekit's `--copy-tokenizer` and
  /// `--write-model-card` choose.
  public struct OutputContents: Sendable {
    /// The donor's tokenizer, generation config and chat-template files.
    public var tokenizer = true
    /// `README.md` and `mergekit_config.yml`.
    public var modelCard = true

    /// Everything.
    public init() {}
  }

  /// The output's files besides the shards and their index: config.json, the tokenizer
  /// files, the recipe, the model card (as `contents` asks).
  public static func sideFiles(
    _ plan: MergePlan, recipeText: String, seed: UInt64, layout: ShardLayout,
    contents: OutputContents = OutputContents()
  ) -> [(String, FileContent)] {
    var files: [(String, FileContent)] = [
      ("config.json", .bytes(Array(plan.outputConfig.formatted().utf8) + [0x0A]))
    ]
    if contents.tokenizer { files += plan.outputTokenizerFiles }
    guard contents.modelCard else { return files }
    files.append(("mergekit_config.yml", .bytes(Array(recipeText.utf8))))
    files.append(
      (
        "README.md",
        .bytes(
          Array(
            OutputFiles.modelCard(plan: plan, recipeText: recipeText, seed: seed, layout: layout)
              .utf8))
      ))
    return files
  }

  /// Bytes of the output's files besides the shards (the index included).
  public static func sideFileBytes(
    _ plan: MergePlan, recipeText: String, seed: UInt64, layout: ShardLayout,
    contents: OutputContents = OutputContents()
  ) -> Int {
    var total = layout.shards.count > 1 ? layout.indexJSON().utf8.count : 0
    // A donor on the Hub not downloaded yet: the sizes the Hub lists.
    let remote = plan.models[plan.donor].folder.remote
    for (name, content) in sideFiles(
      plan, recipeText: recipeText, seed: seed, layout: layout, contents: contents)
    {
      switch content {
      case .bytes(let b): total += b.count
      case .copy(let source):
        total += remote?.files[name] ?? (try? FileSystem.size(of: source)) ?? 0
      }
    }
    return total
  }
}

/// Makes the allocator give buffers of 1 MB or more back to the system when they are freed.
///
/// glibc raises its mmap threshold to the size of each large buffer freed (up to 32 MB), after
/// which buffers of that size come from heaps that are rarely trimmed: a run's resident memory
/// would creep up by tens of megabytes over the tensors. A fixed threshold keeps it at the
/// working set, which is what `merge plan` predicts and `--max-memory` bounds.
func releaseFreedMemory() {
  #if canImport(Glibc)
    // <malloc.h>: M_TRIM_THRESHOLD −1, M_MMAP_THRESHOLD −3 (not in Swift's Glibc module).
    _ = glibcMallopt(-3, 1 << 20)
    _ = glibcMallopt(-1, 4 << 20)
  #endif
}

#if canImport(Glibc)
  @_silgen_name("mallopt")
  private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif

/// The order tensors are computed in.
///
/// By where their first input's bytes lie (the shard, then the offset), so that each input file
/// is read front to back, layer group after layer group. The output's layout does not depend on
/// it: every tensor is written at its own offset.
func processingOrder(_ graphs: [TensorGraph], _ models: [ResolvedModel]) -> [Int] {
  func key(_ g: TensorGraph) -> (Int, Int, Int) {
    guard let input = g.plan.inputs.first,
      let file = models[input.model].weights.file(for: input.tensor),
      let fileIndex = models[input.model].weights.files.firstIndex(where: { $0 === file })
    else { return (Int.max, Int.max, Int.max) }
    return (input.model, fileIndex, input.info.dataRange.lowerBound)
  }
  let keys = graphs.map(key)
  return graphs.indices.sorted {
    (keys[$0].0, keys[$0].1, keys[$0].2, $0) < (keys[$1].0, keys[$1].1, keys[$1].2, $1)
  }
}

/// What ``advise(_:_:_:)`` asks of the kernel for a tensor's input ranges.
enum InputAdvice {
  /// Map them now if they are in the page cache, else read them ahead (the next tensor).
  case willNeed
  /// Read them into the page cache only (a tensor further ahead).
  case readAhead
}

/// Asks the kernel to read a tensor's input ranges ahead.
func advise(_ tensor: TensorPlan, _ models: [ResolvedModel], _ advice: InputAdvice) {
  let all = inputViews(tensor, models)
  switch advice {
  case .willNeed:
    var uncached: [TensorView] = []
    for view in all where !view.file.populateIfCached(view.fileRange) { uncached.append(view) }
    readAhead(uncached)
  case .readAhead:
    readAhead(all)
  }
}

/// The file ranges a tensor's computation maps: its inputs' and their dense task vectors'.
func inputViews(_ tensor: TensorPlan, _ models: [ResolvedModel]) -> [TensorView] {
  // A stage's tensors are in memory, not in a file.
  var all: [TensorView] = []
  for input in tensor.inputs where models[input.model].stage == nil {
    if let view = try? models[input.model].weights.tensor(input.tensor) { all.append(view) }
    // A dense task vector is read with its input.
    if case .taskVector(sparse: false)? = input.adapter,
      let tau = try? models[input.model].taskVector?.weights.tensor(input.tensor)
    {
      all.append(tau)
    }
  }
  return all
}

/// Asks the kernel to read `views` into the page cache in the order a pass over their elements
/// needs them: 4 MiB of each in turn, so the first blocks of every input arrive first (whole
/// inputs one after another would hold the first block until the last input's start is read).
func readAhead(_ views: [TensorView]) {
  for (k, range) in interleaved(views.map(\.fileRange), chunk: 4 << 20) {
    views[k].file.readAhead(range)
  }
}

/// `ranges` cut in pieces of `chunk` bytes, the first piece of each, then the second of each…:
/// (index in `ranges`, piece).
func interleaved(_ ranges: [Range<Int>], chunk: Int) -> [(Int, Range<Int>)] {
  var pieces: [(Int, Range<Int>)] = []
  let longest = ranges.map(\.count).max() ?? 0
  for offset in stride(from: 0, to: longest, by: max(1, chunk)) {
    for (k, range) in ranges.enumerated() where offset < range.count {
      let start = range.lowerBound + offset
      pieces.append((k, start..<min(range.upperBound, start + chunk)))
    }
  }
  return pieces
}
