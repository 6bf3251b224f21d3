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
        noFuse.definition, quiet.definition,
      ])

  static let output = Option.positional("output", help: "The model folder to write.")
  static let noFuse = Option.flag(
    "no-fuse", help: "Do not fuse elementwise chains (for comparison; the bytes are the same).")
  static let quiet = Option.flag("quiet", short: "q", help: "Print no progress.")

  var recipe: String
  var output: String
  var settings: MergeArguments
  var quiet: Bool

  init(_ arguments: ParsedArguments) throws(UsageError) {
    recipe = try arguments.value(CommonOption.recipe)
    output = try arguments.value(Self.output)
    settings = try MergeArguments(arguments)
    settings.compile.options.fuse = !(try arguments.value(Self.noFuse))
    quiet = try arguments.value(Self.quiet)
  }

  func run(console: Console) -> Int32 {
    guard
      let compilation = compileReporting(
        recipe, options: settings.compile.options, console: console),
      let merge = compilation.merge
    else { return ExitCode.failure }
    if let problem = outputProblem(merge.plan) {
      console.report(problem)
      return ExitCode.failure
    }
    let showProgress = console.standardErrorIsTerminal && !quiet
    var options = settings.execution.runOptions(
      progress: showProgress ? { @Sendable p in console.err("\r" + progressLine(p)) } : nil)
    guard let schedule = schedule(for: merge, options: options, console: console) else {
      return ExitCode.failure
    }
    options.schedule = schedule
    do {
      let summary = try MergeRunner.run(merge, output: output, options: options)
      if showProgress { console.err("\r\u{1B}[K") }
      console.out(summaryLine(summary, cache: options.cache))
      return ExitCode.success
    } catch {
      if showProgress { console.err("\n") }
      console.report(
        [error.diagnostic(for: merge, file: recipe)], sources: compilation.sources)
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

  /// Why OUTPUT cannot be written, if it cannot: it is (or is inside) an input model's folder,
  /// or it exists and is not a merge output.
  func outputProblem(_ plan: MergePlan) -> Diagnostic.Message? {
    var trimmed = output
    while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
    let parent = FileSystem.directoryName(trimmed)
    guard let parentReal = FileSystem.realPath(parent) else {
      return .noOutputParent(parent, output: output)
    }
    let name = trimmed.split(separator: "/").last.map(String.init) ?? trimmed
    let target = FileSystem.join(parentReal, name)
    for m in plan.models {
      guard let input = FileSystem.realPath(m.path) else { continue }
      if target == input || target.hasPrefix(input + "/") || input.hasPrefix(target + "/") {
        return .outputIsInput(output, model: m.reference.description)
      }
    }
    switch FileSystem.kind(of: target) {
    case .missing: return nil
    case .file, .other: return .outputNotFolder(output)
    case .directory:
      let names = (try? FileSystem.contents(of: target)) ?? []
      if names.isEmpty || names.contains("mergekit_config.yml") { return nil }
      return .outputNotMerge(output)
    }
  }
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
  fileprivate static func noOutputParent(_ parent: String, output: String) -> Self {
    Self("output-refused", "the folder '\(parent)' that would hold '\(output)' does not exist")
  }
  fileprivate static func outputIsInput(_ output: String, model: String) -> Self {
    Self(
      "output-refused",
      "refusing to write '\(output)': it is or holds the input model folder '\(model)'")
  }
  fileprivate static func outputNotFolder(_ output: String) -> Self {
    Self("output-refused", "'\(output)' exists and is not a folder")
  }
  fileprivate static func outputNotMerge(_ output: String) -> Self {
    Self(
      "output-refused",
      "'\(output)' exists and is not a merge output (it has no mergekit_config.yml); remove it or choose another folder"
    )
  }
  static func doesNotFit(_ cost: MergeCost, maxMemory: Int) -> Self {
    Self(
      "over-memory-budget",
      "the merge needs about \(formatBytes(cost.peakMemoryBytes)) of memory (at tensor '\(cost.peakTensor)') even with the smallest schedule; --max-memory is \(formatBytes(maxMemory)) ('merge plan' shows the details)"
    )
  }
}
