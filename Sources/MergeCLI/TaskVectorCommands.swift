import MergeModel
import MergeRecipe
import MergeRuntime

/// `merge diff BASE FINETUNED OUT`: takes a fine-tune's task vector.
struct DiffCommand: Subcommand {
  static let configuration = CommandConfiguration(
    commandName: "diff",
    abstract: "Write the task vector τ = FINETUNED − BASE as a task-vector folder.",
    discussion: """
      Writes OUT: task_vector.safetensors (τ per tensor, dense; or with --density D below 1,
      each tensor's ⌊D·n⌋ entries of largest magnitude with their positions) and
      task_vector.json (the base and fine-tune with their files' sizes and SHA-256, the dtype,
      the density, and per tensor the norms of τ and of the base and how many entries changed).
      τ is stored exactly by default (f32 for 16-bit models, f64 otherwise), so 'merge apply'
      of it to its base gives back the fine-tune's bytes. The layout is in the README.
      """,
    arguments: [
      base.definition, finetuned.definition, output.definition, density.definition,
      dtype.definition,
    ])

  static let base = Option.positional("base", help: "The base model folder.")
  static let finetuned = Option.positional("finetuned", help: "The fine-tuned model folder.")
  static let output = Option.positional("output", help: "The task-vector folder to write.")
  static let density = Option.share(
    "density", value: "d",
    help: "Keep each tensor's largest-magnitude share d of entries (0 < d ≤ 1; default 1, dense).")
  static let dtype = Option.dtype(
    "dtype", help: "The dtype τ is stored in (float32, float64, bfloat16, float16).")

  var basePath: String
  var finetunedPath: String
  var outputPath: String
  var densityValue: Double
  var dtypeValue: DType?

  init(_ arguments: ParsedArguments) throws(UsageError) {
    basePath = try arguments.value(Self.base)
    finetunedPath = try arguments.value(Self.finetuned)
    outputPath = try arguments.value(Self.output)
    densityValue = try arguments.value(Self.density) ?? 1
    dtypeValue = try arguments.value(Self.dtype)
  }

  func run(console: Console) -> Int32 {
    do {
      let manifest = try TaskVectors.diff(
        base: basePath, finetuned: finetunedPath, output: outputPath, density: densityValue,
        dtype: dtypeValue)
      let changed = manifest.tensors.reduce(0) { $0 + $1.changed }
      let total = manifest.tensors.reduce(0) { $0 + $1.shape.reduce(1, *) }
      console.out(
        "\(outputPath): τ of \(manifest.tensors.count) tensors, \(manifest.dtype.torchName), \(grouped(changed)) of \(grouped(total)) entries changed\(manifest.density < 1 ? ", density \(manifest.density)" : "")\n"
      )
      return ExitCode.success
    } catch {
      console.report(.taskVectorFailed(error.description))
      return ExitCode.failure
    }
  }
}

/// `merge apply BASE TV[:SCALE]... OUT`: adds task vectors to a base.
struct ApplyCommand: Subcommand {
  static let configuration = CommandConfiguration(
    commandName: "apply",
    abstract: "Add scaled task vectors to a base model: θ = base + Σ scale·τ.",
    discussion: """
      Each VECTOR is a task-vector folder ('merge diff'), optionally with ':SCALE' (default 1;
      -1 removes what it added, 0.5 goes half way). Sums are taken in f64 and rounded once to
      each tensor's dtype; tensors no vector names, config.json and the tokenizer files are
      the base's. A vector taken from another base (its files' sizes or SHA-256 differ) is
      refused unless --force. OUT is written atomically, with a model card.
      """,
    arguments: [base.definition, vectors.definition, output.definition, force.definition])

  static let base = DiffCommand.base
  static let vectors = Option.positionalList("vector", help: "A task-vector folder, with :SCALE.")
  static let output = Option.positional("output", help: "The model folder to write.")
  static let force = Option.flag(
    "force", help: "Apply task vectors taken from another base.")

  var basePath: String
  var vectorList: [(folder: String, scale: Double)]
  var outputPath: String
  var forced: Bool

  init(_ arguments: ParsedArguments) throws(UsageError) {
    basePath = try arguments.value(Self.base)
    outputPath = try arguments.value(Self.output)
    forced = try arguments.value(Self.force)
    var list: [(folder: String, scale: Double)] = []
    for text in try arguments.value(Self.vectors) {
      // FOLDER:SCALE, where SCALE is a number (a folder name may hold ':' itself).
      if let colon = text.lastIndex(of: ":"), let scale = Double(text[text.index(after: colon)...])
      {
        guard scale.isFinite else {
          throw UsageError(message: "the scale of '\(text)' is not finite", helpLine: nil)
        }
        list.append((String(text[..<colon]), scale))
      } else {
        list.append((text, 1))
      }
    }
    vectorList = list
  }

  func run(console: Console) -> Int32 {
    do {
      let count = try TaskVectors.apply(
        base: basePath, vectors: vectorList, output: outputPath, force: forced)
      console.out(
        "\(outputPath): \(count) tensors, base + \(vectorList.map { "\($0.scale)·τ" }.joined(separator: " + "))\n"
      )
      return ExitCode.success
    } catch {
      console.report(.taskVectorFailed(error.description))
      return ExitCode.failure
    }
  }
}

extension Diagnostic.Message {
  static func taskVectorFailed(_ reason: String) -> Self { Self("task-vector-failed", reason) }
}

/// `merge analyze BASE MODEL...`: where fine-tunes changed a base, and how they interfere.
struct AnalyzeCommand: Subcommand {
  static let configuration = CommandConfiguration(
    commandName: "analyze",
    abstract: "Show where fine-tunes changed a base model and how their task vectors interfere.",
    discussion: """
      For each fine-tune's task vector τ = MODEL − BASE: per tensor ‖τ‖, ‖τ‖/‖θ_base‖, the share
      of entries changed and the share of ‖τ‖² in the largest 1% and 10% of entries; across
      fine-tunes the cosine matrix (whole model and per layer), the share of entries changed by
      two or more whose signs disagree, after TIES trimming at --density the overlap of the kept
      entries and the conflicts left, and the shared component (the mean τ). Reads one tensor at
      a time. --json prints everything (see the README for its fields); --html writes a page
      with plots (norms and sign conflicts per layer, the cosine heat map, sparsity per layer).
      """,
    arguments: [
      base.definition, models.definition, density.definition, json.definition, html.definition,
    ])

  static let base = DiffCommand.base
  static let models = Option.positionalList("model", help: "A fine-tuned model folder.")
  static let density = Option.share(
    "density", value: "d", help: "TIES's density for the trimmed figures (default 0.5).")
  static let json = Option.flag("json", help: "Print JSON.")
  static let html = Option.option(
    "html", value: "report.html",
    help: "Also write the report as one self-contained HTML page with plots.")

  var basePath: String
  var modelPaths: [String]
  var densityValue: Double
  var asJSON: Bool
  var htmlPath: String?

  init(_ arguments: ParsedArguments) throws(UsageError) {
    basePath = try arguments.value(Self.base)
    modelPaths = try arguments.value(Self.models)
    densityValue = try arguments.value(Self.density) ?? 0.5
    asJSON = try arguments.value(Self.json)
    htmlPath = try arguments.value(Self.html)
  }

  func run(console: Console) -> Int32 {
    // Where the page goes is checked before the models are read.
    if let htmlPath {
      let folder = FileSystem.directoryName(htmlPath)
      if FileSystem.kind(of: htmlPath) == .directory || FileSystem.kind(of: folder) != .directory {
        console.report(
          .taskVectorFailed(
            "--html \(htmlPath): "
              + (FileSystem.kind(of: htmlPath) == .directory
                ? "is a folder; give a file name" : "folder '\(folder)' does not exist")))
        return ExitCode.failure
      }
      // Never written into a model it reads.
      if let target = FileSystem.realPath(folder),
        let input = ([basePath] + modelPaths).first(where: { path in
          FileSystem.realPath(path).map { target == $0 || target.hasPrefix($0 + "/") } ?? false
        })
      {
        console.report(
          .taskVectorFailed(
            "--html \(htmlPath): inside the model folder '\(input)', which analyze reads"))
        return ExitCode.failure
      }
    }
    do {
      let terminal = console.standardErrorIsTerminal
      let report = try InterferenceReport.analyze(
        base: basePath, models: modelPaths, density: densityValue,
        progress: { done, total in
          if terminal { console.err("\r[\(done)/\(total)] tensors\u{1B}[K") }
        })
      if terminal { console.err("\r\u{1B}[K") }
      if let htmlPath {
        try FileSystem.replace(htmlPath, bytes: Array(AnalyzeHTML.page(report).utf8))
      }
      if asJSON {
        console.out(report.json.formatted() + "\n")
        return ExitCode.success
      }
      console.out(text(report))
      return ExitCode.success
    } catch {
      console.report(.taskVectorFailed(error.description))
      return ExitCode.failure
    }
  }

  func text(_ r: InterferenceReport) -> String {
    func f(_ v: Double) -> String { format2(v) }
    var out = "base \(r.base); τ of \(r.models.count) fine-tune\(r.models.count == 1 ? "" : "s")\n"
    for (i, m) in r.models.enumerated() {
      out +=
        "  [\(i)] \(m): ‖τ‖ \(f(r.normSquared[i].squareRoot())), outside the shared direction (mean τ) \(f(r.normSquared[i] > 0 ? 100 * r.outsideSquared[i] / r.normSquared[i] : 0))%\n"
    }
    out += "cosine:\n"
    for row in r.whole.cosine { out += "  " + row.map { f($0) }.joined(separator: "  ") + "\n" }
    out += "sign conflicts: \(f(100 * r.whole.conflictRate))% of the entries two or more τ change\n"
    let overlap = r.keptAny > 0 ? 100 * Double(r.keptShared) / Double(r.keptAny) : 0
    let left = r.keptShared > 0 ? 100 * Double(r.keptConflicting) / Double(r.keptShared) : 0
    out +=
      "after TIES trimming at density \(r.density): \(f(overlap))% of kept entries kept by two or more, \(f(left))% of those conflict\n"
    out += "per layer (‖τ‖ of each fine-tune, sign conflicts):\n"
    for l in r.layers.keys.sorted() {
      guard let s = r.layers[l] else { continue }
      out +=
        "  \(l): " + s.dots.indices.map { f(s.dots[$0][$0].squareRoot()) }.joined(separator: "  ")
        + "   \(f(100 * s.conflictRate))%\n"
    }
    return out
  }
}

/// `merge extract-lora BASE FINETUNED OUT`: a LoRA adapter approximating a fine-tune.
struct ExtractLoraCommand: Subcommand {
  static let configuration = CommandConfiguration(
    commandName: "extract-lora",
    abstract: "Write a PEFT LoRA adapter whose B·A approximates each linear layer's task vector.",
    discussion: """
      As mergekit-extract-lora: each linear weight's τ = FINETUNED − BASE is decomposed by a
      truncated SVD (LAPACK), A = √S·Vᵀ and B = U·√S, with lora_alpha equal to the rank;
      embeddings, the output head and norms are saved whole from FINETUNED (modules_to_save).
      --rank R keeps R singular values per module (default 128); --energy E keeps the fewest
      that hold E of ‖τ‖² (at most --rank), so ranks differ per module (rank_pattern). OUT
      (adapter_model.safetensors, adapter_config.json, README.md) is written atomically; it
      loads in PEFT and is a recipe source as BASE+OUT.
      """,
    arguments: [
      base.definition, finetuned.definition, output.definition, rank.definition,
      energy.definition, dtype.definition, CommonOption.threads.definition,
    ])

  static let base = DiffCommand.base
  static let finetuned = DiffCommand.finetuned
  static let output = Option.positional("output", help: "The adapter folder to write.")
  static let rank = Option.option(
    "rank", value: "r",
    help: "The rank of each module, or the largest with --energy (default 128).",
    expected: "a whole number from 1", parse: { Int($0).flatMap { $0 >= 1 ? $0 : nil } })
  static let energy = Option.share(
    "energy", value: "e",
    help: "Per module, the fewest singular values that hold this share of ‖τ‖² (0 < e ≤ 1).")
  static let dtype = Option.dtype("dtype", help: "The dtype of A and B (default: the fine-tune's).")

  var basePath: String
  var finetunedPath: String
  var outputPath: String
  var rankValue: Int
  var energyValue: Double?
  var dtypeValue: DType?
  var threads: Int

  init(_ arguments: ParsedArguments) throws(UsageError) {
    basePath = try arguments.value(Self.base)
    finetunedPath = try arguments.value(Self.finetuned)
    outputPath = try arguments.value(Self.output)
    rankValue = try arguments.value(Self.rank) ?? 128
    energyValue = try arguments.value(Self.energy)
    dtypeValue = try arguments.value(Self.dtype)
    threads = try arguments.value(CommonOption.threads)
  }

  func run(console: Console) -> Int32 {
    do {
      let terminal = console.standardErrorIsTerminal
      let summary = try LoraExtraction.extract(
        base: basePath, finetuned: finetunedPath, output: outputPath, rank: rankValue,
        energy: energyValue, dtype: dtypeValue, threads: threads,
        progress: { done, total in
          if terminal { console.err("\r[\(done)/\(total)] modules\u{1B}[K") }
        })
      if terminal { console.err("\r\u{1B}[K") }
      let ranks = summary.modules.map(\.rank)
      console.out(
        "\(outputPath): \(summary.modules.count) modules, rank \(ranks.min() ?? 0)–\(ranks.max() ?? 0), relative error ‖τ − B·A‖/‖τ‖ \(String(format: "%.4f", summary.relativeError)); \(summary.saved.count) tensors saved whole (\(summary.modulesToSave.joined(separator: ", ")))\n"
      )
      return ExitCode.success
    } catch {
      console.report(.taskVectorFailed(error.description))
      return ExitCode.failure
    }
  }
}
