import MergeCompiler
import MergeModel

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// The machine's throughput constants that turn a schedule into seconds.
///
/// `merge plan --calibrate` measures them (``Calibration``) and keeps them in the cache folder
/// as `calibration.json`; without that, ``defaults`` (measured on a 2-core x86-64 machine,
/// 2026) are used and the plan says so.
public struct CostConstants: Sendable, Equatable {
  /// Nanoseconds to take one input element through one blockwise pass on one thread (decode,
  /// the fused arithmetic, encode).
  public var passNanoseconds: Double
  /// Nanoseconds per element of one selection (torch-order sort prefix), on one thread.
  public var selectNanoseconds: Double
  /// Nanoseconds per input element of a whole-tensor kernel of unit weight, on one thread.
  public var wholeNanoseconds: Double
  /// Bytes per second of mapping input pages that are in the page cache.
  public var mapBytesPerSecond: Double
  /// Bytes per second of reading input pages that are not.
  public var diskBytesPerSecond: Double
  /// Bytes per second of writing the output.
  public var writeBytesPerSecond: Double
  /// Resident bytes a run holds beyond the plan's own (worker threads, the writer).
  public var overheadBytes: Int
  /// Whether these were measured on this machine.
  public var calibrated: Bool

  /// Documented defaults (see README, "merge plan").
  public static let defaults = CostConstants(
    passNanoseconds: 0.7, selectNanoseconds: 16, wholeNanoseconds: 7.5,
    mapBytesPerSecond: 1.1e11, diskBytesPerSecond: 1.6e9, writeBytesPerSecond: 4e9,
    overheadBytes: 4 << 20, calibrated: false)

  static let fileName = "calibration.json"

  /// The constants stored in `directory` by `merge plan --calibrate`, or the defaults.
  public static func load(from directory: String?) -> CostConstants {
    guard let directory,
      let bytes = try? FileSystem.read(FileSystem.join(directory, fileName), limit: 1 << 20),
      let text = String(validating: bytes, as: UTF8.self),
      let json = try? JSONValue.parse(text)
    else { return defaults }
    func number(_ key: String) -> Double? {
      guard case .number(let s)? = json[key], let v = Double(s), v.isFinite, v > 0 else {
        return nil
      }
      return v
    }
    guard let pass = number("pass_ns_per_element"),
      let select = number("select_ns_per_element"),
      let whole = number("whole_tensor_ns_per_element"),
      let map = number("map_bytes_per_second"),
      let disk = number("disk_bytes_per_second"),
      let write = number("write_bytes_per_second"),
      let overhead = number("overhead_bytes")
    else { return defaults }
    return CostConstants(
      passNanoseconds: pass, selectNanoseconds: select, wholeNanoseconds: whole,
      mapBytesPerSecond: map, diskBytesPerSecond: disk, writeBytesPerSecond: write,
      overheadBytes: Int(overhead), calibrated: true)
  }

  /// Stores the constants in `directory` (written to a temporary name, then renamed).
  public func save(to directory: String) throws(ModelError) {
    try FileSystem.makeDirectories(directory)
    let json = JSONValue.object([
      ("pass_ns_per_element", .number(String(passNanoseconds))),
      ("select_ns_per_element", .number(String(selectNanoseconds))),
      ("whole_tensor_ns_per_element", .number(String(wholeNanoseconds))),
      ("map_bytes_per_second", .number(String(mapBytesPerSecond))),
      ("disk_bytes_per_second", .number(String(diskBytesPerSecond))),
      ("write_bytes_per_second", .number(String(writeBytesPerSecond))),
      ("overhead_bytes", .integer(overheadBytes)),
    ])
    let path = FileSystem.join(directory, Self.fileName)
    let temporary = path + ".\(getpid())"
    try FileSystem.write(temporary, bytes: Array((json.formatted() + "\n").utf8))
    guard rename(temporary, path) == 0 else {
      unlink(temporary)
      throw .io(path: path, call: "rename", errno: errno)
    }
  }
}

/// What one output tensor costs.
public struct TensorCost: Sendable {
  /// The tensor.
  public var name: String
  /// Its elements.
  public var elements: Int
  /// Bytes of its distinct inputs.
  public var inputBytes: Int
  /// Bytes read from the mappings over all passes.
  public var bytesRead: Int
  /// Bytes of its stored data.
  public var outputBytes: Int
  /// Resident bytes its computation needs: its buffers and mapped input pages.
  public var workingSetBytes: Int
  /// Bytes of the next tensor's inputs mapped ahead while it computes.
  public var readAheadBytes: Int
  /// Estimated seconds.
  public var seconds: Double
  /// Its reductions, and how many of them the cache holds.
  public var reductions: Int
  public var cachedReductions: Int
}

/// The price of a merge: bytes, memory and time, from the compiled graphs and the schedule the
/// executor follows, without reading any tensor data.
public struct MergeCost: Sendable {
  /// Per tensor, in the order the run computes them.
  public var tensors: [TensorCost]
  /// Worker threads.
  public var threads: Int
  /// The schedule priced.
  public var schedule: Schedule
  /// The constants used.
  public var constants: CostConstants
  /// Resident bytes before the first tensor (the process with the compiled plan).
  public var baselineBytes: Int
  /// Predicted peak resident bytes.
  public var peakMemoryBytes: Int
  /// The tensor at which the peak is reached.
  public var peakTensor: String
  /// Bytes of distinct input tensor data.
  public var inputBytes: Int
  /// Of those, bytes not in the page cache now (read from disk).
  public var uncachedInputBytes: Int
  /// Bytes read from the mappings over all passes.
  public var bytesRead: Int
  /// Bytes of every file the output folder will hold.
  public var bytesWritten: Int
  /// Output shard files.
  public var shards: Int
  /// Estimated wall seconds, startup included.
  public var estimatedSeconds: Double

  /// The cost of running `merge` with `options`.
  ///
  /// - Parameters:
  ///   - outputFiles: bytes of the output's files besides the shards (config, tokenizer, card).
  ///   - baselineBytes: resident bytes of the process holding the compiled plan.
  ///   - startupSeconds: what it took to get here (checking and compiling).
  ///   - residency: bytes of `path`'s `range` in the page cache (nil: assume all of it).
  public static func estimate(
    _ merge: CompiledMerge, layout: ShardLayout, outputFiles: Int, options: RunOptions,
    constants: CostConstants, baselineBytes: Int, startupSeconds: Double,
    residency: ((String, Range<Int>) -> Int)? = nil
  ) -> MergeCost {
    let threads = max(1, options.threads)
    let schedule = options.schedule
    // The program's steps: intermediate stages' tensors where they are first read, held in
    // memory until their last reader is done.
    let steps = programSteps(merge, everyStageTensor: options.intermediates != nil)
    let identities = StageTensors(merge).identities
    var tensors: [TensorCost] = []
    var uncached = 0
    var inputs = 0
    var seconds = startupSeconds
    var peak = 0
    var peakTensor = ""
    let mapped = steps.map { mappedBytes($0.graph, models: $0.models) }
    for (step, s) in steps.enumerated() {
      let graph = s.graph
      var cost = price(
        graph, models: s.models, stages: identities, options: options, constants: constants,
        inMemory: s.stage != nil && options.intermediates == nil)
      cost.name = s.stage.map { $0 + ":" + s.name } ?? s.name
      let next =
        step + 1 < steps.count && schedule.prefetch && s.readsAhead ? mapped[step + 1] : 0
      cost.readAheadBytes = next
      // Inputs not in the page cache come from disk (a stage's tensors are in memory).
      var cold = 0
      if let residency {
        for input in Set(graph.plan.inputs) where s.models[input.model].stage == nil {
          guard let file = s.models[input.model].weights.file(for: input.tensor) else {
            continue
          }
          let start = file.header.dataOffset + input.info.dataRange.lowerBound
          cold +=
            input.info.byteCount - residency(file.path, start..<(start + input.info.byteCount))
        }
      }
      uncached += cold
      inputs += cost.inputBytes
      cost.seconds += Double(cold) / constants.diskBytesPerSecond
      seconds += cost.seconds
      if cost.workingSetBytes + cost.readAheadBytes + s.heldBytes > peak {
        peak = cost.workingSetBytes + cost.readAheadBytes + s.heldBytes
        peakTensor = cost.name
      }
      tensors.append(cost)
    }
    for stage in merge.stages where options.intermediates != nil {
      let layout = MergeRunner.layout(stage.plan, options: options)
      seconds +=
        Double(
          MergeRunner.sideFileBytes(
            stage.plan, recipeText: stage.recipeText, seed: merge.seed, layout: layout,
            contents: options.contents)) / constants.writeBytesPerSecond
    }
    seconds += Double(outputFiles) / constants.writeBytesPerSecond
    return MergeCost(
      tensors: tensors, threads: threads, schedule: schedule, constants: constants,
      baselineBytes: baselineBytes,
      peakMemoryBytes: baselineBytes + constants.overheadBytes + peak, peakTensor: peakTensor,
      inputBytes: inputs, uncachedInputBytes: uncached,
      bytesRead: tensors.reduce(0) { $0 + $1.bytesRead },
      bytesWritten: layout.totalFileSize + outputFiles
        + (options.intermediates == nil
          ? 0
          : merge.stages.reduce(0) {
            $0 + MergeRunner.layout($1.plan, options: options).totalFileSize
          }),
      shards: layout.shards.count,
      estimatedSeconds: seconds)
  }

  static let page = 4096

  /// Bytes of a tensor's distinct inputs mapped from files, in whole pages (a stage's tensors
  /// are in memory already, and counted there).
  static func mappedBytes(_ graph: TensorGraph, models: [ResolvedModel]) -> Int {
    var total = 0
    for input in Set(graph.plan.inputs) where models[input.model].stage == nil {
      total += (input.info.byteCount + page - 1) / page * page + page
    }
    return total
  }

  /// One tensor's cost without the next tensor's prefetch or disk reads; `inMemory`: its
  /// result is kept in memory (a stage's tensor), not written to a file.
  static func price(
    _ graph: TensorGraph, models: [ResolvedModel], stages: [StageKey: String],
    options: RunOptions, constants: CostConstants, inMemory: Bool = false
  ) -> TensorCost {
    let count = graph.plan.count
    let output = graph[graph.output]
    let outputBytes = count * graph.plan.outputDType.byteSize
    // A task vector added to an input is read with it: a dense one mapped page by page on
    // every pass, a sparse one read once and held.
    var tauRead: [Int: Int] = [:]
    var tauHeld = 0
    for (k, input) in graph.plan.inputs.enumerated() {
      guard case .taskVector? = input.adapter, let tv = models[input.model].taskVector else {
        continue
      }
      let bytes = tv.bytes(of: input.tensor)
      tauRead[k] = bytes.stored
      tauHeld += bytes.held
    }
    let tauBytes = tauRead.values.reduce(0, +)
    let mapped = mappedBytes(graph, models: models) + (tauHeld == 0 ? tauBytes : 0)
    let inputBytes = graph.plan.inputs.reduce(0) { $0 + $1.info.byteCount } + tauBytes
    var cost = TensorCost(
      name: graph.plan.name, elements: count, inputBytes: inputBytes, bytesRead: inputBytes,
      outputBytes: outputBytes, workingSetBytes: mapped, readAheadBytes: 0, seconds: 0,
      reductions: 0, cachedReductions: 0)
    cost.seconds =
      Double(outputBytes) / (inMemory ? constants.mapBytesPerSecond : constants.writeBytesPerSecond)
    cost.seconds += Double(mapped) / constants.mapBytesPerSecond
    if case .copyBytes = output.op { return cost }
    // Reductions the cache holds are not computed, and their passes not made.
    var known = Set<Int>()
    for (i, node) in graph.nodes.enumerated() where node.op.isReduction {
      cost.reductions += 1
      if let cache = options.cache,
        cache.contains(
          ReductionCache.key(NodeID(index: i), graph: graph, models: models, stages: stages))
      {
        known.insert(i)
      }
    }
    cost.cachedReductions = known.count
    var footprint = TensorExecutor.predictedFootprint(
      of: graph, threads: options.threads, schedule: options.schedule, known: known)
    footprint.adapterBytes += tauHeld
    if case .wholeTensor(let kernel) = graph[output.inputs[0]].op {
      let n = graph[output.inputs[0]].inputs.count
      let largestInput = graph.plan.inputs.map(\.info.byteCount).max() ?? 0
      cost.workingSetBytes =
        footprint.wholeTensorBytes + footprint.adapterBytes
        + kernel.base.cost.temporaryBytes(inputs: n) * count
        + (options.schedule.releaseWindow == nil ? mapped : largestInput)
      cost.seconds +=
        Double(count * n) * kernel.base.cost.weight * constants.wholeNanoseconds / 1e9
      return cost
    }
    priceBlockwise(
      graph, footprint: footprint, known: known, mapped: mapped, tauRead: tauRead,
      options: options, constants: constants, into: &cost)
    return cost
  }

  /// The passes over blocks and the selections of a tensor computed block by block.
  ///
  /// Memory by phase: the passes over blocks (evaluator buffers, input pages, the magnitudes a
  /// gather fills), then each level's selections; the sets they leave stay to the end. Input
  /// pages stay mapped until the tensor is done, unless released window by window.
  static func priceBlockwise(
    _ graph: TensorGraph, footprint: TensorFootprint, known: Set<Int>, mapped: Int,
    tauRead: [Int: Int] = [:], options: RunOptions, constants: CostConstants,
    into cost: inout TensorCost
  ) {
    let schedule = options.schedule
    let count = graph.plan.count
    let workers = footprint.workers
    // Passes: the final one, and one per uncomputed reduction reading the input.
    var elementPasses = 0
    var bytesRead = 0
    for r in graph.passesReading(skipping: known) {
      elementPasses += r.passes * graph.plan.inputs[r.input].info.count
      bytesRead += r.passes * (graph.plan.inputs[r.input].info.byteCount + (tauRead[r.input] ?? 0))
    }
    cost.bytesRead = bytesRead
    cost.seconds += Double(elementPasses) * constants.passNanoseconds / 1e9 / Double(workers)
    // Blocks are written by the workers that compute them, side by side.
    cost.seconds -=
      Double(cost.outputBytes) / constants.writeBytesPerSecond * (1 - 1 / Double(workers))
    if schedule.releaseWindow != nil {
      // Released pages are mapped again by each later pass.
      cost.seconds += Double(max(0, bytesRead - cost.inputBytes)) / constants.mapBytesPerSecond
    }
    // Released window by window, an input keeps about a window mapped, and the page cache's
    // large folios (up to 2 MiB) map a little beyond it on each fault.
    func windowPages(_ blocks: Int) -> Int {
      min(
        mapped,
        blocks * footprint.blockSize
          * graph.plan.inputs.reduce(0) { $0 + $1.info.dtype.byteSize }
          + graph.plan.inputs.count * (2 << 20))
    }
    let window = schedule.releaseWindow.map(windowPages)
    let pages = window ?? mapped
    let passPeak = footprint.evaluatorBytes + footprint.gatherBytes
    var selectionPeak = 0
    var releasing = false
    for level in TensorExecutor.reductionLevels(graph) {
      let pending = level.filter { !known.contains($0.index) }
      for pass in TensorExecutor.reductionPasses(pending, of: graph, schedule: schedule)
      where pass.isSelection {
        let selections = pass.nodes.count
        selectionPeak = max(
          selectionPeak, selections * TensorExecutor.selectionBytes(count: count))
        releasing = releasing || pass.releasesInputs
        let lanes = min(options.threads, selections)
        cost.seconds +=
          Double(selections * count) * constants.selectNanoseconds / 1e9 / Double(lanes)
      }
    }
    var sets = 0
    for node in graph.nodes where node.op.kind == .selection { sets += (count + 63) / 64 * 8 }
    let phases: Int
    if window != nil {
      phases = max(pages + passPeak, selectionPeak)
    } else if releasing {
      // The gathers hold a window of input pages beside their magnitudes, the selections no
      // page at all, and the final pass maps the inputs again.
      phases = max(
        mapped + footprint.evaluatorBytes,
        windowPages(TensorExecutor.gatherReleaseWindow) + passPeak, selectionPeak)
      cost.seconds += Double(mapped) / constants.mapBytesPerSecond
    } else {
      phases = pages + max(passPeak, selectionPeak)
    }
    cost.workingSetBytes = sets + footprint.adapterBytes + phases
  }
}

/// The process's memory, from `/proc/self/statm`.
public enum ProcessMemory {
  /// Resident bytes now (0 where `/proc` is not available).
  public static func residentBytes() -> Int {
    guard let bytes = try? FileSystem.read("/proc/self/statm", limit: 4096),
      let text = String(validating: bytes, as: UTF8.self)
    else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
  }
}
