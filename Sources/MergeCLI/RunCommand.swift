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
    arguments: [
      .positional("recipe", help: "The recipe file (mergekit YAML)."),
      .positional("output", help: "The model folder to write."),
      .threads,
      .seed,
      .shardSize,
      .option(
        "max-memory", value: "bytes",
        help:
          "Stay under this much resident memory, e.g. 300M or 2GiB (a slower schedule if needed; refused up front if none fits)."
      ),
      .allowUnknown,
      .flag(
        "no-fuse", help: "Do not fuse elementwise chains (for comparison; the bytes are the same)."),
      .option(
        "cache", value: "dir",
        help: "Where to keep reduction results across runs (default: ~/.cache/merge)."),
      .flag("no-cache", help: "Recompute every reduction, and keep nothing."),
      .flag("quiet", short: "q", help: "Print no progress."),
    ])

  var recipe: String
  var output: String
  var threads: Int
  var seed: UInt64
  var shardSize: Int
  var maxMemory: Int?
  var allowUnknown: Bool
  var quiet: Bool
  var fuse: Bool
  /// The cache folder (nil with `--no-cache`).
  var cacheDirectory: String?

  init(_ arguments: ParsedArguments) throws(UsageError) {
    recipe = arguments.positional("recipe") ?? ""
    output = arguments.positional("output") ?? ""
    threads = try threadsOption(arguments)
    seed = try seedOption(arguments)
    shardSize = try shardSizeOption(arguments)
    maxMemory = try byteCountOption(arguments, "max-memory")
    allowUnknown = arguments.flag("allow-unknown")
    quiet = arguments.flag("quiet")
    fuse = !arguments.flag("no-fuse")
    cacheDirectory = try cacheDirectoryOption(arguments)
  }

  func run(console: Console) -> Int32 {
    guard let compiled = compile(recipe, allowUnknown: allowUnknown, console: console) else {
      return ExitCode.failure
    }
    let (plan, text) = compiled
    if let problem = outputProblem(plan) {
      console.err("error: \(problem)\n")
      return ExitCode.failure
    }
    let showProgress = console.standardErrorIsTerminal && !quiet
    var progress: (@Sendable (RunProgress) -> Void)?
    if showProgress {
      progress = { @Sendable p in console.err("\r" + progressLine(p)) }
    }
    var options = RunOptions(threads: threads, seed: seed, shardSize: shardSize, progress: progress)
    options.fuse = fuse
    if let cacheDirectory { options.cache = ReductionCache(directory: cacheDirectory) }
    let graphs: [TensorGraph]
    do {
      graphs = try MergeRunner.compile(plan, options: options)
    } catch {
      console.err("error: \(error.description)\n")
      return ExitCode.failure
    }
    if let maxMemory {
      // The plan decides the schedule, or refuses before anything is written.
      let (cost, fits) = chooseSchedule(
        plan: plan, graphs: graphs, recipeText: text, options: options,
        constants: CostConstants.load(from: options.cache?.directory), startupSeconds: 0,
        maxMemory: maxMemory)
      guard fits else {
        console.err(
          "error: the merge needs about \(formatBytes(cost.peakMemoryBytes)) of memory (at tensor '\(cost.peakTensor)') "
            + "even with the smallest schedule; --max-memory is \(formatBytes(maxMemory)) ('merge plan' shows the details)\n"
        )
        return ExitCode.failure
      }
      options.schedule = cost.schedule
      if cost.schedule != Schedule() && !quiet {
        console.err(
          "note: --max-memory \(formatBytes(maxMemory)): running the small schedule (predicted peak \(formatBytes(cost.peakMemoryBytes)))\n"
        )
      }
    }
    do {
      let summary = try MergeRunner.run(
        plan: plan, graphs: graphs, recipeText: text, output: output, options: options)
      if showProgress { console.err("\r\u{1B}[K") }
      console.out(
        "\(output): \(summary.tensorCount) tensors, \(summary.shardCount) shard\(summary.shardCount == 1 ? "" : "s"), "
          + "\(formatBytes(summary.bytesWritten)) in \(String(format2(summary.seconds))) s"
          + (options.cache.map { c in
            let s = c.statistics
            return s.hits + s.misses > 0
              ? " (cached reductions: \(s.hits) of \(s.hits + s.misses))" : ""
          } ?? "") + "\n")
      return ExitCode.success
    } catch {
      if showProgress { console.err("\n") }
      console.err("error: \(error.description)\n")
      return ExitCode.failure
    }
  }

  /// Why OUTPUT cannot be written, if it cannot: it is (or is inside) an input model's folder,
  /// or it exists and is not a merge output.
  func outputProblem(_ plan: MergePlan) -> String? {
    var trimmed = output
    while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
    let parent = FileSystem.directoryName(trimmed)
    guard let parentReal = FileSystem.realPath(parent) else {
      return "the folder '\(parent)' that would hold '\(output)' does not exist"
    }
    let name = trimmed.split(separator: "/").last.map(String.init) ?? trimmed
    let target = FileSystem.join(parentReal, name)
    for m in plan.models {
      guard let input = FileSystem.realPath(m.path) else { continue }
      if target == input || target.hasPrefix(input + "/") || input.hasPrefix(target + "/") {
        return
          "refusing to write '\(output)': it is or holds the input model folder '\(m.reference.description)'"
      }
    }
    switch FileSystem.kind(of: target) {
    case .missing: return nil
    case .file, .other: return "'\(output)' exists and is not a folder"
    case .directory:
      let names = (try? FileSystem.contents(of: target)) ?? []
      if names.isEmpty || names.contains("mergekit_config.yml") { return nil }
      return
        "'\(output)' exists and is not a merge output (it has no mergekit_config.yml); remove it or choose another folder"
    }
  }
}

/// Checks and resolves a single-stage recipe, printing diagnostics; nil when it has errors.
func compile(_ recipe: String, allowUnknown: Bool, console: Console) -> (MergePlan, String)? {
  let report = RecipeChecker.check(path: recipe, options: RecipeOptions(allowUnknown: allowUnknown))
  console.err(render(report, recipePath: recipe))
  guard !report.hasErrors, let parsed = report.recipe else {
    console.err(countLine(report) + "\n")
    return nil
  }
  guard parsed.stages.count == 1, let stage = parsed.stages.first else {
    console.err("\(recipe): error: multi-stage recipes can be checked but not run yet\n")
    return nil
  }
  let (plan, diagnostics) = Resolver.resolve(stage: stage, report: report, file: recipe)
  var combined = report
  combined.diagnostics = diagnostics
  console.err(render(combined, recipePath: recipe))
  guard let plan else {
    console.err(countLine(combined) + "\n")
    return nil
  }
  for (key, present) in [
    ("tokenizer_source", stage.tokenizerSource != nil), ("tokenizer", stage.tokenizer != nil),
    ("chat_template", stage.chatTemplate != nil),
  ] where present {
    console.err(
      "\(recipe): warning: '\(key)' is not applied yet: the tokenizer is copied from '\(plan.models[plan.donor].reference.description)'\n"
    )
  }
  // The recipe is recorded as it was checked, not read again.
  let text = report.text ?? ""
  return (plan, text)
}

func formatBytes(_ n: Int) -> String {
  let d = Double(n)
  if d >= 1e9 { return format2(d / 1e9) + " GB" }
  if d >= 1e6 { return format2(d / 1e6) + " MB" }
  if d >= 1e3 { return format2(d / 1e3) + " KB" }
  return "\(n) B"
}

func format2(_ x: Double) -> String {
  let r = (x * 100).rounded() / 100
  var s = String(r)
  if let dot = s.firstIndex(of: ".") {
    let decimals = s.distance(from: dot, to: s.endIndex) - 1
    if decimals < 2 { s += String(repeating: "0", count: 2 - decimals) }
  }
  return s
}

func progressLine(_ p: RunProgress) -> String {
  let rate = p.elapsed > 0 ? Double(p.bytesDone) / p.elapsed : 0
  let left = rate > 0 ? Double(p.totalBytes - p.bytesDone) / rate : 0
  return
    "[\(p.tensorsDone)/\(p.tensorCount)] \(formatBytes(p.bytesDone)) of \(formatBytes(p.totalBytes)), "
    + "\(formatBytes(Int(rate)))/s, \(Int(left.rounded())) s left \u{1B}[K"
}
