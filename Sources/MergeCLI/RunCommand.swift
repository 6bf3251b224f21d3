import Dispatch
import MergeCompiler
import MergeModel
import MergeRecipe
import MergeRuntime
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// `merge run RECIPE OUTPUT`: checks, compiles and runs a merge.
struct RunCommand: Subcommand {
  static let configuration = CommandConfiguration(
    commandName: "run",
    abstract: "Merge the models of a recipe into a new model folder.",
    discussion: """
      Checks the recipe first (the same diagnostics as 'merge check'), then compiles every
      output tensor to a graph and runs it on all cores. OUTPUT is written beside its final
      place and moved there only when complete, so a failed or interrupted run leaves it as it
      was. It holds the safetensors shards, config.json, the tokenizer and side files of the
      base model (or the first model), the recipe as mergekit_config.yml, and a model card.
      The same recipe and seed give the same bytes on any machine and thread count.
      """,
    arguments: [CommonOption.recipe.definition, output.definition] + MergeArguments.definitions
      + [
        format.definition, locked.definition, intermediates.definition, partition.definition,
        force.definition, noCopyTokenizer.definition,
        noModelCard.definition, noFuse.definition, quiet.definition,
      ])

  static let output = Option.positional("output", help: "The model folder to write.")
  static let format = Option.option(
    "format", value: "text|json", help: "How the summary is printed: text (default) or json.",
    expected: "text or json", parse: { $0 == "json" ? true : ($0 == "text" ? false : nil) })
  static let locked = Option.flag(
    "locked",
    help:
      "Refuse to run unless every input is the one the recipe's lock file names (merge lock), and fail if the output differs from the one it records."
  )
  static let intermediates = Option.option(
    "intermediates", value: "dir",
    help:
      "Also write each named stage of a multi-stage recipe as the model folder DIR/<name>, as mergekit-multi's -I does (by default they are computed in memory and never written)."
  )
  static let partition = Option.option(
    "partition", value: "i/n",
    help:
      "Compute only partition I (from 0) of N: its share of the output's shards, by bytes, into OUTPUT/partition-I-of-N; 'merge assemble OUTPUT' joins the N.",
    expected: "I/N with 0 ≤ I < N ≤ 10000", parse: { Partition(parsing: $0) })
  static let noFuse = Option.flag(
    "no-fuse", help: "Do not fuse elementwise chains (for comparison; the bytes are the same).")
  static let quiet = Option.flag("quiet", short: "q", help: "Print no progress.")
  static let force = Option.flag(
    "force", help: "Replace OUTPUT when it holds a previous merge output (mergekit_config.yml).")
  static let noCopyTokenizer = Option.flag(
    "no-copy-tokenizer",
    help: "Do not copy the tokenizer, generation config and chat template files.")
  static let noModelCard = Option.flag(
    "no-write-model-card", help: "Write neither README.md nor mergekit_config.yml.")

  var recipe: String
  var output: String
  var settings: MergeArguments
  var quiet: Bool
  var force: Bool
  var intermediates: String?
  var locked: Bool
  var partition: Partition?
  var json: Bool
  var contents = MergeRunner.OutputContents()

  init(_ arguments: ParsedArguments) throws(UsageError) {
    recipe = try arguments.value(CommonOption.recipe)
    output = try arguments.value(Self.output)
    settings = try MergeArguments(arguments)
    settings.compile.options.fuse = !(try arguments.value(Self.noFuse))
    quiet = try arguments.value(Self.quiet)
    force = try arguments.value(Self.force)
    intermediates = try arguments.value(Self.intermediates)
    locked = try arguments.value(Self.locked)
    partition = try arguments.value(Self.partition)
    if partition != nil && intermediates != nil {
      throw UsageError(message: "--partition and --intermediates cannot be used together")
    }
    json = try arguments.value(Self.format) ?? false
    settings.compile.options.allStageTensors = intermediates != nil
    contents.tokenizer = !(try arguments.value(Self.noCopyTokenizer))
    contents.modelCard = !(try arguments.value(Self.noModelCard))
  }

  func run(console: Console) -> Int32 {
    guard
      var compilation = compileReporting(
        recipe, options: settings.compile.options, console: console),
      var merge = compilation.merge
    else { return ExitCode.failure }
    // Hub repositories checked from their headers are downloaded now, then read from the cache.
    if !HubFetch.missing(merge).isEmpty {
      guard
        HubFetch.download(
          merge, options: settings.compile.options, quiet: quiet, console: console)
      else { return ExitCode.failure }
      let again = Compiler.compile(path: recipe, options: settings.compile.options)
      guard let downloaded = again.merge else {
        console.report(again)
        return ExitCode.failure
      }
      (compilation, merge) = (again, downloaded)
    }
    let showProgress = console.standardErrorIsTerminal && !quiet
    var options = settings.execution.runOptions(
      progress: progressReporter(console: console, terminal: showProgress))
    options.contents = contents
    options.intermediates = intermediates
    options.partition = partition
    // With a lock file (or --locked), the inputs are hashed first: --locked refuses any that
    // differ, and the lock records this run's inputs and output.
    let lockPath = MergeLock.path(ofRecipe: recipe)
    var lock: MergeLock?
    if locked || FileSystem.kind(of: lockPath) == .file {
      guard let current = currentLock(merge, compilation, path: lockPath, console: console) else {
        return ExitCode.failure
      }
      lock = current
    }
    options.metadata = Provenance.metadata(
      recipeText: merge.recipeText, seed: merge.seed, lock: lock)
    guard let schedule = schedule(for: merge, options: options, console: console) else {
      return ExitCode.failure
    }
    options.schedule = schedule
    options.replaceExisting = force
    let cancellation = Cancellation()
    options.cancellation = cancellation
    let signals = InterruptSignals(cancelling: cancellation)
    defer { signals.restore() }
    do {
      let summary = try MergeRunner.run(merge, output: output, options: options)
      if showProgress { console.err("\r\u{1B}[K") }
      console.out(
        json
          ? summaryJSON(summary, cache: options.cache, lock: lock == nil ? nil : lockPath)
            .formatted() + "\n"
          : summaryLine(summary, cache: options.cache))
      // The cache stays within its limit, the least recently used entries going first.
      options.cache?.prune(limit: ReductionCache.defaultLimit(parse: parseByteCount))
      if let partition {
        console.out(
          "\(output)/\(partition.folderName) done; 'merge assemble \(output)' joins the \(partition.count) partitions when all are\n"
        )
      } else if var lock {
        // A partition is not the output: the lock records only whole runs.
        return record(&lock, path: lockPath, threads: options.threads, console: console)
      }
      return ExitCode.success
    } catch {
      if showProgress { console.err("\n") }
      console.report(
        [error.diagnostic(for: merge, file: recipe)], sources: compilation.sources)
      if case .interrupted(let signal) = error { return 128 + signal }
      return ExitCode.failure
    }
  }

  /// What the merge reads now, as a lock; with `--locked`, nil after saying how it differs
  /// from the lock file at `path` (or that there is none).
  func currentLock(
    _ merge: CompiledMerge, _ compilation: Compilation, path: String, console: Console
  ) -> MergeLock? {
    let current: MergeLock
    do {
      current = try MergeLock.make(
        merge, recipeText: compilation.text ?? merge.recipeText, threads: settings.execution.threads
      )
    } catch {
      console.report(.lockFailed(error.description))
      return nil
    }
    guard locked else { return current }
    let existing: MergeLock
    do {
      existing = try MergeLock(path: path)
    } catch {
      console.report(.lockFailed(error.description + "; 'merge lock \(recipe)' writes one"))
      return nil
    }
    if let difference = existing.mismatch(current) {
      console.report(.lockMismatch(path, difference))
      return nil
    }
    var kept = current
    kept.outputs = existing.outputs
    return kept
  }

  /// Writes the output's files into the lock at `path`; with `--locked`, when the lock already
  /// records an output, fails unless this one is the same.
  func record(_ lock: inout MergeLock, path: String, threads: Int, console: Console) -> Int32 {
    do {
      let found = try MergeLock.outputs(of: output, threads: threads)
      if locked, !lock.outputs.isEmpty, let difference = lock.outputMismatch(found) {
        console.report(.outputMismatch(path, difference))
        return ExitCode.failure
      }
      lock.outputs = found
      try lock.write(to: path)
      if !quiet { console.err("\(path): \(found.count) output files recorded\n") }
      return ExitCode.success
    } catch {
      console.report(.lockFailed(error.description))
      return ExitCode.failure
    }
  }

  /// The schedule `--max-memory` allows (the default without one), or nil after saying that
  /// none fits.
  func schedule(for merge: CompiledMerge, options: RunOptions, console: Console) -> Schedule? {
    guard let maxMemory = settings.execution.maxMemory else { return Schedule() }
    let (cost, fits) = MergeCost.cheapestSchedule(
      for: merge, options: options,
      constants: CostConstants.load(from: settings.execution.cacheDirectory),
      startupSeconds: 0, maxMemory: maxMemory)
    guard fits else {
      console.report(.doesNotFit(cost, maxMemory: maxMemory))
      return nil
    }
    if cost.schedule != Schedule() && !quiet {
      console.err(
        "note: --max-memory \(formatBytes(maxMemory)): running the small schedule (predicted peak \(formatBytes(cost.peakMemoryBytes)))\n"
      )
    }
    return cost.schedule
  }

  /// The summary as JSON (`--format json`).
  func summaryJSON(_ summary: RunSummary, cache: ReductionCache?, lock: String?) -> JSONValue {
    let statistics = cache?.statistics ?? (hits: 0, misses: 0)
    return .object([
      ("output", .string(output)), ("tensors", .integer(summary.tensorCount)),
      ("shards", .integer(summary.shardCount)), ("bytes_written", .integer(summary.bytesWritten)),
      ("seconds", .number(format2(summary.seconds))),
      (
        "cached_reductions",
        .object([
          ("hits", .integer(statistics.hits)),
          ("total", .integer(statistics.hits + statistics.misses)),
        ])
      ),
      ("lock", lock.map { .string($0) } ?? .null),
    ])
  }

  /// `OUTPUT: 39 tensors, 1 shard, 1.26 MB in 0.47 s (cached reductions: 78 of 78)`.
  func summaryLine(_ summary: RunSummary, cache: ReductionCache?) -> String {
    var line = "\(output): \(summary.tensorCount) tensors, \(summary.shardCount) shard"
    line += summary.shardCount == 1 ? "" : "s"
    line += ", \(formatBytes(summary.bytesWritten)) in \(format2(summary.seconds)) s"
    if let statistics = cache?.statistics, statistics.hits + statistics.misses > 0 {
      line += " (cached reductions: \(statistics.hits) of \(statistics.hits + statistics.misses))"
    }
    return line + "\n"
  }
}

extension RunCommand {
  /// How progress is shown: redrawn in place on a terminal; elsewhere (a CI log) a line every
  /// ``RunCommand/logInterval`` seconds and one at the end; nothing with `--quiet`.
  func progressReporter(console: Console, terminal: Bool) -> (@Sendable (RunProgress) -> Void)? {
    if quiet { return nil }
    if terminal { return { @Sendable p in console.err("\r" + progressLine(p)) } }
    let last = Mutex<Double>(0)
    return { @Sendable p in
      let due = last.withLock { printed in
        guard p.elapsed - printed >= Self.logInterval || p.tensorsDone == p.tensorCount else {
          return false
        }
        printed = p.elapsed
        return true
      }
      if due { console.err(logLine(p) + "\n") }
    }
  }

  /// Seconds between progress lines in a log.
  static let logInterval = 5.0
}

/// `[12/39] 1.2 MB of 2.5 MB in 3 s` (a log's line: no escapes, no estimate).
func logLine(_ p: RunProgress) -> String {
  "[\(p.tensorsDone)/\(p.tensorCount)] \(formatBytes(p.bytesDone)) of \(formatBytes(p.totalBytes)) in \(Int(p.elapsed.rounded())) s"
}

/// `[12/39] 1.2 MB of 2.5 MB, 10 MB/s, 1 s left`.
func progressLine(_ p: RunProgress) -> String {
  let rate = p.elapsed > 0 ? Double(p.bytesDone) / p.elapsed : 0
  let left = rate > 0 ? Double(p.totalBytes - p.bytesDone) / rate : 0
  return
    "[\(p.tensorsDone)/\(p.tensorCount)] \(formatBytes(p.bytesDone)) of \(formatBytes(p.totalBytes)), "
    + "\(formatBytes(Int(rate)))/s, \(Int(left.rounded())) s left \u{1B}[K"
}

extension Diagnostic.Message {
  static func doesNotFit(_ cost: MergeCost, maxMemory: Int) -> Self {
    Self(
      "over-memory-budget",
      "the merge needs about \(formatBytes(cost.peakMemoryBytes)) of memory (at tensor '\(cost.peakTensor)') even with the smallest schedule; --max-memory is \(formatBytes(maxMemory)) ('merge plan' shows the details)"
    )
  }
}

extension Diagnostic.Message {
  static func lockFailed(_ reason: String) -> Self { Self("lock-failed", reason) }
  static func lockMismatch(_ path: String, _ difference: String) -> Self {
    Self(
      "lock-mismatch",
      "--locked: the inputs are not the ones \(path) names: \(difference); nothing was computed")
  }
  static func outputMismatch(_ path: String, _ difference: String) -> Self {
    Self(
      "output-mismatch",
      "--locked: the output is not the one \(path) records: \(difference)")
  }
}
