import Dispatch
import MergeCompiler
import MergeModel
import MergeRecipe
import MergeRuntime

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// `merge plan RECIPE`: what a merge will cost, without reading any tensor data.
struct PlanCommand: Subcommand {
  static let configuration = CommandConfiguration(
    commandName: "plan",
    abstract: "Predict the memory, time and bytes of a merge without running it.",
    discussion: """
      Compiles the recipe exactly as 'merge run' would (reading config.json files and
      safetensors headers only) and prices the schedule: bytes read and written, peak
      resident memory, estimated time, the tensors with the largest working sets, and which
      reductions the cache already holds. Time comes from throughput constants: measured on
      this machine by 'merge plan --calibrate' (kept in the cache folder), or documented
      defaults, which the plan then says it used. With --max-memory, the plan shows the
      schedule 'merge run --max-memory' would choose, and fails when none fits.
      """,
    arguments: [recipe.definition, json.definition, format.definition]
      + MergeArguments.definitions + [partitions.definition, calibrate.definition])

  static let recipe = Option.optionalPositional(
    "recipe", help: "The recipe file (mergekit YAML).")
  static let json = Option.flag("json", help: "Print JSON.")
  static let format = Option.option(
    "format", value: "format", help: "text (default), json or markdown.",
    expected: "use text, json or markdown",
    parse: { Format(rawValue: $0 == "md" ? "markdown" : $0) })
  static let partitions = Option.option(
    "partitions", value: "n",
    help: "Also price each of N partitions (merge run --partition I/N): bytes, time, peak memory.",
    expected: "a whole number from 1 to 10000",
    parse: { Int($0).flatMap { (1...10_000).contains($0) ? $0 : nil } })
  static let calibrate = Option.flag(
    "calibrate", help: "Measure this machine's throughput first (a few seconds) and keep it.")

  enum Format: String, Sendable { case text, json, markdown }

  var recipe: String?
  var format: Format
  var settings: MergeArguments
  var calibrate: Bool
  var partitionCount: Int?

  init(_ arguments: ParsedArguments) throws(UsageError) {
    recipe = try arguments.value(Self.recipe)
    let format = try arguments.value(Self.format)
    if try arguments.value(Self.json), let format, format != .json {
      throw UsageError(
        message: "'--json' and '--format \(format.rawValue)' disagree", helpLine: nil)
    }
    self.format = try arguments.value(Self.json) ? .json : (format ?? .text)
    settings = try MergeArguments(arguments)
    calibrate = try arguments.value(Self.calibrate)
    partitionCount = try arguments.value(Self.partitions)
    if calibrate && settings.execution.cacheDirectory == nil {
      throw UsageError(
        message: "'--calibrate' keeps its figures in the cache folder; drop '--no-cache'",
        helpLine: nil)
    }
    if recipe == nil && !calibrate {
      throw UsageError(message: "Missing expected argument '<recipe>'", helpLine: nil)
    }
  }

  func run(console: Console) -> Int32 {
    let start = DispatchTime.now().uptimeNanoseconds
    if calibrate {
      guard calibrateMachine(console: console) else { return ExitCode.failure }
      guard recipe != nil else { return ExitCode.success }
    }
    guard let recipe,
      let merge = compileReporting(recipe, options: settings.compile.options, console: console)?
        .merge
    else { return ExitCode.failure }
    let startup = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    var runOptions = settings.execution.runOptions()
    // The run's provenance (a lock's digest has a fixed length; its value is not needed here).
    let locked = FileSystem.kind(of: MergeLock.path(ofRecipe: recipe)) == .file
    runOptions.metadata = Provenance.metadata(
      recipeText: merge.recipeText, seed: merge.seed,
      lockDigest: locked ? String(repeating: "0", count: 64) : nil)
    let (cost, fits) = MergeCost.cheapestSchedule(
      for: merge, options: runOptions,
      constants: CostConstants.load(from: settings.execution.cacheDirectory),
      startupSeconds: startup,
      maxMemory: settings.execution.maxMemory)
    var parts: [MergeCost] = []
    if let partitionCount {
      var options = runOptions
      options.schedule = cost.schedule
      parts = MergeCost.partitions(
        partitionCount, of: merge, options: options, constants: cost.constants,
        baselineBytes: cost.baselineBytes, startupSeconds: startup)
    }
    switch format {
    case .json:
      var value = json(merge, cost, fits: fits)
      if case .object(var fields) = value, !parts.isEmpty {
        fields.append(("partitions", .array(parts.enumerated().map { partitionJSON($0, $1) })))
        value = .object(fields)
      }
      console.out(value.formatted() + "\n")
    case .markdown:
      console.out(markdown(recipe, merge, cost, fits: fits) + partitionsMarkdown(parts))
    case .text: console.out(text(recipe, merge, cost, fits: fits) + partitionsText(parts))
    }
    if !fits, let maxMemory = settings.execution.maxMemory {
      console.report(.doesNotFit(cost, maxMemory: maxMemory))
      return ExitCode.failure
    }
    return ExitCode.success
  }

  /// Measures the cost constants and keeps them in the cache folder; false after reporting why
  /// it could not.
  func calibrateMachine(console: Console) -> Bool {
    guard let directory = settings.execution.cacheDirectory else { return false }
    let threads = settings.execution.threads
    console.err("calibrating on \(threads) thread\(threads == 1 ? "" : "s")…\n")
    do {
      let constants = try Calibration.run(
        threads: threads, scratch: Calibration.scratch(in: directory))
      try constants.save(to: directory)
      console.err(
        "calibrated: \(describe(constants)); kept in \(FileSystem.join(directory, "calibration.json"))\n"
      )
      return true
    } catch let error as Calibration.Failure {
      console.report(.calibrationFailed(error.description))
    } catch {
      console.report(.calibrationFailed("cannot keep the calibration: \(error)"))
    }
    return false
  }

  // MARK: Output

  func describe(_ c: CostConstants) -> String {
    "pass \(format2(c.passNanoseconds)) ns/element, selection \(format2(c.selectNanoseconds)) ns/element, "
      + "whole-tensor \(format2(c.wholeNanoseconds)) ns/element, map \(formatBytes(Int(c.mapBytesPerSecond)))/s, "
      + "disk \(formatBytes(Int(c.diskBytesPerSecond)))/s, write \(formatBytes(Int(c.writeBytesPerSecond)))/s"
  }

  struct Source {
    var name: String
    var files: Int
    var bytes: Int
    var cached: Int
    /// Whether it is on the Hub, not downloaded yet.
    var remote: Bool
  }

  func whereItIs(_ s: Source) -> String {
    s.remote ? "on the Hub, not downloaded yet" : "\(percent(s.cached, s.bytes)) in the page cache"
  }

  /// Every model read from a folder, those of intermediate stages included.
  func sources(_ merge: CompiledMerge) -> [Source] {
    merge.inputModels.map { m in
      // A task vector's file is read with the model's.
      let files = m.weights.files + (m.taskVector?.weights.files ?? [])
      let bytes = m.weights.byteCount + (m.taskVector?.weights.byteCount ?? 0)
      var cached = 0
      for file in files where m.folder.remote == nil {
        let size = file.header.fileSize - file.header.dataOffset
        cached += MappedFile.cachedBytes(
          path: file.path, range: file.header.dataOffset..<(file.header.dataOffset + size))
      }
      return Source(
        name: m.reference.description, files: files.count, bytes: bytes,
        cached: min(cached, bytes), remote: m.folder.remote != nil)
    }
  }

  func largest(_ cost: MergeCost) -> [TensorCost] {
    Array(
      cost.tensors.enumerated().sorted {
        ($0.element.workingSetBytes, -$0.offset) > ($1.element.workingSetBytes, -$1.offset)
      }.prefix(5).map(\.element))
  }

  func scheduleName(_ s: Schedule) -> String {
    s == Schedule() ? "default" : "small (no read-ahead, pages released every 64 blocks)"
  }

  func reductionsLine(_ cost: MergeCost) -> String {
    let total = cost.tensors.reduce(0) { $0 + $1.reductions }
    let cached = cost.tensors.reduce(0) { $0 + $1.cachedReductions }
    return total == 0 ? "no reductions" : "\(cached) of \(total) reductions cached"
  }

  func timeNote(_ cost: MergeCost) -> String {
    cost.constants.calibrated
      ? "calibrated" : "default constants; run 'merge plan --calibrate' to measure this machine"
  }

  func text(_ recipe: String, _ merge: CompiledMerge, _ cost: MergeCost, fits: Bool) -> String {
    let plan = merge.plan
    var out = "\(recipe): \(plan.method.spec.name), \(plan.models.count) models, "
    out += "\(plan.tensors.count) tensors → \(cost.shards) shard\(cost.shards == 1 ? "" : "s")\n"
    if !merge.stages.isEmpty {
      let computed = merge.stages.reduce(0) { $0 + $1.graphs.count }
      out += "stages:   \(merge.stages.map(\.name).joined(separator: ", ")) before the output; "
      out += "\(computed) of their tensors computed in memory, none written\n"
    }
    out += "sources:\n"
    let srcs = sources(merge)
    let width = srcs.map(\.name.count).max() ?? 0
    for s in srcs {
      out += "  " + s.name + String(repeating: " ", count: width - s.name.count + 2)
      out += "\(formatBytes(s.bytes)) in \(s.files) file\(s.files == 1 ? "" : "s"), "
      out += whereItIs(s) + "\n"
    }
    out += "read:     \(formatBytes(cost.inputBytes)) of tensor data"
    out += " (\(formatBytes(cost.bytesRead)) over all passes; "
    out += "\(formatBytes(cost.uncachedInputBytes)) from disk)\n"
    let download = HubFetch.downloadBytes(merge)
    if download > 0 { out += "download: \(formatBytes(download)) from the Hub before the merge\n" }
    out += "write:    \(formatBytes(cost.bytesWritten))\n"
    out += "memory:   peak \(formatBytes(cost.peakMemoryBytes)) at \(cost.peakTensor)"
    out += " (process \(formatBytes(cost.baselineBytes)) + working set); "
    out += "schedule \(scheduleName(cost.schedule))\n"
    if let maxMemory = settings.execution.maxMemory {
      out += "budget:   \(formatBytes(maxMemory)): \(fits ? "fits" : "does not fit")\n"
    }
    out += "time:     \(format2(cost.estimatedSeconds)) s on \(cost.threads) thread"
    out += "\(cost.threads == 1 ? "" : "s") (\(timeNote(cost)))\n"
    out += "cache:    \(reductionsLine(cost))\n"
    out += "largest working sets:\n"
    let top = largest(cost)
    let nameWidth = top.map(\.name.count).max() ?? 0
    for t in top {
      out += "  " + t.name + String(repeating: " ", count: nameWidth - t.name.count + 2)
      out += "\(formatBytes(t.workingSetBytes)), \(grouped(t.elements)) elements, "
      out += "\(format2(t.seconds)) s\n"
    }
    return out
  }

  /// Each partition's shards, bytes written and read, time and peak memory.
  func partitionsText(_ parts: [MergeCost]) -> String {
    guard !parts.isEmpty else { return "" }
    var out = "partitions (merge run --partition I/\(parts.count), then merge assemble):\n"
    for (i, p) in parts.enumerated() {
      out +=
        "  \(i): \(p.shards) shard\(p.shards == 1 ? "" : "s"), \(formatBytes(p.bytesWritten)) written, "
      out += "\(formatBytes(p.inputBytes)) read, \(format2(p.estimatedSeconds)) s, "
      out += "peak \(formatBytes(p.peakMemoryBytes))\n"
    }
    return out
  }

  func partitionsMarkdown(_ parts: [MergeCost]) -> String {
    guard !parts.isEmpty else { return "" }
    var out = "\n| Partition | Shards | Written | Read | Time | Peak memory |\n"
    out += "|---:|---:|---:|---:|---:|---:|\n"
    for (i, p) in parts.enumerated() {
      out += "| \(i)/\(parts.count) | \(p.shards) | \(formatBytes(p.bytesWritten)) | "
      out += "\(formatBytes(p.inputBytes)) | \(format2(p.estimatedSeconds)) s | "
      out += "\(formatBytes(p.peakMemoryBytes)) |\n"
    }
    return out
  }

  func partitionJSON(_ index: Int, _ p: MergeCost) -> JSONValue {
    .object([
      ("partition", .integer(index)), ("shards", .integer(p.shards)),
      ("bytes_written", .integer(p.bytesWritten)), ("bytes_read", .integer(p.inputBytes)),
      ("estimated_seconds", .number(String((p.estimatedSeconds * 1000).rounded() / 1000))),
      ("peak_memory_bytes", .integer(p.peakMemoryBytes)),
    ])
  }

  func markdown(_ recipe: String, _ merge: CompiledMerge, _ cost: MergeCost, fits: Bool) -> String {
    let plan = merge.plan
    var out = "### `merge plan` — `\(recipe)`\n\n"
    out +=
      "**\(plan.method.spec.name)** of \(plan.models.count) models → \(plan.tensors.count) tensors "
    out += "in \(cost.shards) shard\(cost.shards == 1 ? "" : "s")\n\n"
    out += "| | |\n|---|---|\n"
    out += "| Peak memory | \(formatBytes(cost.peakMemoryBytes)) (at `\(cost.peakTensor)`) |\n"
    if let maxMemory = settings.execution.maxMemory {
      out += "| Budget | \(formatBytes(maxMemory)): \(fits ? "fits" : "**does not fit**") |\n"
    }
    out += "| Estimated time | \(format2(cost.estimatedSeconds)) s on \(cost.threads) threads "
    out += "(\(cost.constants.calibrated ? "calibrated" : "default constants")) |\n"
    out +=
      "| Read | \(formatBytes(cost.inputBytes)) (\(formatBytes(cost.uncachedInputBytes)) from disk) |\n"
    let download = HubFetch.downloadBytes(merge)
    if download > 0 { out += "| Download | \(formatBytes(download)) from the Hub |\n" }
    out += "| Written | \(formatBytes(cost.bytesWritten)) |\n"
    out += "| Schedule | \(scheduleName(cost.schedule)) |\n"
    out += "| Cache | \(reductionsLine(cost)) |\n\n"
    out += "| Source | Size | Files | In page cache |\n|---|---:|---:|---:|\n"
    for s in sources(merge) {
      out +=
        "| `\(s.name)` | \(formatBytes(s.bytes)) | \(s.files) | \(s.remote ? "on the Hub" : percent(s.cached, s.bytes)) |\n"
    }
    out += "\n| Largest working sets | Memory | Elements | Time |\n|---|---:|---:|---:|\n"
    for t in largest(cost) {
      out += "| `\(t.name)` | \(formatBytes(t.workingSetBytes)) | \(grouped(t.elements)) | "
      out += "\(format2(t.seconds)) s |\n"
    }
    return out
  }

  func json(_ merge: CompiledMerge, _ cost: MergeCost, fits: Bool) -> JSONValue {
    let plan = merge.plan
    func number(_ x: Double) -> JSONValue { .number(String((x * 1000).rounded() / 1000)) }
    var fields: [(String, JSONValue)] = [
      ("method", .string(plan.method.spec.name)),
      ("peak_memory_bytes", .integer(cost.peakMemoryBytes)),
      ("peak_tensor", .string(cost.peakTensor)),
      ("baseline_memory_bytes", .integer(cost.baselineBytes)),
      ("estimated_seconds", number(cost.estimatedSeconds)),
      ("bytes_read", .integer(cost.inputBytes)),
      ("bytes_read_all_passes", .integer(cost.bytesRead)),
      ("bytes_read_from_disk", .integer(cost.uncachedInputBytes)),
      ("bytes_written", .integer(cost.bytesWritten)),
      ("bytes_to_download", .integer(HubFetch.downloadBytes(merge))),
      ("tensors", .integer(plan.tensors.count)),
      ("shards", .integer(cost.shards)),
      ("threads", .integer(cost.threads)),
      ("calibrated", .bool(cost.constants.calibrated)),
      ("schedule", .string(cost.schedule == Schedule() ? "default" : "small")),
      (
        "reductions",
        .object([
          ("total", .integer(cost.tensors.reduce(0) { $0 + $1.reductions })),
          ("cached", .integer(cost.tensors.reduce(0) { $0 + $1.cachedReductions })),
        ])
      ),
    ]
    if let maxMemory = settings.execution.maxMemory {
      fields.append(("max_memory_bytes", .integer(maxMemory)))
      fields.append(("fits", .bool(fits)))
    }
    fields.append(
      (
        "sources",
        .array(
          sources(merge).map {
            .object([
              ("model", .string($0.name)), ("bytes", .integer($0.bytes)),
              ("files", .integer($0.files)), ("bytes_in_page_cache", .integer($0.cached)),
            ])
          })
      ))
    fields.append(
      (
        "largest_tensors",
        .array(
          largest(cost).map {
            .object([
              ("name", .string($0.name)), ("elements", .integer($0.elements)),
              ("working_set_bytes", .integer($0.workingSetBytes)),
              ("estimated_seconds", number($0.seconds)),
            ])
          })
      ))
    return .object(fields)
  }

  func percent(_ part: Int, _ whole: Int) -> String {
    whole == 0 ? "100%" : "\(Int((Double(part) / Double(whole) * 100).rounded()))%"
  }
}

extension Diagnostic.Message {
  fileprivate static func calibrationFailed(_ reason: String) -> Self {
    Self("calibration-failed", "calibration failed: \(reason)")
  }
}
