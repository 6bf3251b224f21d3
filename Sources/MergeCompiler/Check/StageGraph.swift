import MergeRecipe

/// The stages of a multi-stage recipe as mergekit-multi reads them: their names, which stage
/// reads which, the order they are resolved in, and the stage whose output is the recipe's.
///
/// mergekit-multi's rules: every YAML document is a stage; a stage with a `name` can be read by
/// any other stage (before or after it in the file) by using the name as a model path, which
/// then means that stage's output, not a folder; names are unique; at most one stage has no
/// name, and that one is the final merge. mergekit-multi writes every named stage to its
/// intermediate folder, so a named stage that nothing reads is a result of its own there; merge
/// writes one output, so the output is the unnamed stage, or else the last stage (in file
/// order) that no other stage reads, and a stage the output does not depend on is an error.
struct StageGraph {
  /// Each named stage's index, by name.
  var index: [String: Int] = [:]
  /// For each stage, the stages it reads, each with the first place it names it.
  var reads: [[(stage: Int, at: SourceRange)]] = []
  /// The stages in the order they are checked and resolved: every stage after the stages it
  /// reads (stages in a cycle last, in file order).
  var order: [Int] = []
  /// The stage whose output is the recipe's, when there is one.
  var output: Int?
  /// The stages whose outputs other stages read.
  var isRead: Set<Int> = []

  /// The most stages a recipe may have (the walks over stages recurse, one level per stage).
  static let limit = 1_000

  /// The stage graph of `stages`; each mistake in it is reported to `bag`.
  init(_ stages: [MergeConfiguration], bag: inout DiagnosticBag) {
    reads = Array(repeating: [], count: stages.count)
    if stages.count > Self.limit {
      bag.report(
        .tooManyStages(stages.count), at: SourceRange(at: stages[Self.limit].range.start))
      return
    }
    guard stages.count > 1 else {
      order = Array(stages.indices)
      output = stages.indices.first
      return
    }
    var unnamed: [Int] = []
    for (i, stage) in stages.enumerated() {
      guard let name = stage.name else {
        unnamed.append(i)
        continue
      }
      if let first = index[name.value] {
        bag.report(
          .duplicateStage(name.value), at: name.range,
          notes: stages[first].name.map { [Diagnostic.Note("first named here", at: $0.range)] }
            ?? [])
      } else {
        index[name.value] = i
      }
    }
    for i in unnamed.dropFirst() {
      bag.report(
        .severalUnnamed, at: SourceRange(at: stages[i].range.start),
        notes: [
          Diagnostic.Note(
            "this stage has no name either", at: SourceRange(at: stages[unnamed[0]].range.start))
        ])
    }
    for (i, stage) in stages.enumerated() {
      for reference in Self.references(of: stage) {
        guard let j = index[reference.model.path.value],
          !reads[i].contains(where: { $0.stage == j })
        else { continue }
        reads[i].append((j, reference.model.path.range))
        isRead.insert(j)
      }
    }
    reportCycles(stages, bag: &bag)
    if let only = unnamed.first {
      output = only
    } else {
      output = stages.indices.last { !isRead.contains($0) && !inCycle.contains($0) }
    }
    // Resolution order: what the output reads, depth first, then every other stage.
    var visited = Set<Int>()
    func visit(_ i: Int) {
      guard !inCycle.contains(i), visited.insert(i).inserted else { return }
      for r in reads[i] { visit(r.stage) }
      order.append(i)
    }
    if let output { visit(output) }
    let used = visited
    for i in stages.indices { visit(i) }
    order += stages.indices.filter { inCycle.contains($0) }
    if let output {
      let outputName = stages[output].name.map { "stage '\($0.value)'" } ?? "the unnamed stage"
      for i in stages.indices where !used.contains(i) && !inCycle.contains(i) {
        guard let name = stages[i].name else { continue }
        bag.report(.unusedStage(name.value, output: outputName), at: name.range)
      }
    }
  }

  /// The stages that are part of a cycle.
  private(set) var inCycle: Set<Int> = []

  /// Reports each cycle once, at the reference that closes it.
  private mutating func reportCycles(_ stages: [MergeConfiguration], bag: inout DiagnosticBag) {
    var state = [Int](repeating: 0, count: stages.count)  // 0 new, 1 on the path, 2 done
    var path: [Int] = []
    func name(_ i: Int) -> String { stages[i].name?.value ?? "?" }
    func walk(_ i: Int) {
      state[i] = 1
      path.append(i)
      for (j, at) in reads[i] {
        if state[j] == 1 {
          let loop = Array(path[(path.lastIndex(of: j) ?? 0)...])
          inCycle.formUnion(loop)
          bag.report(.stageCycle((loop + [j]).map(name)), at: at)
        } else if state[j] == 0 {
          walk(j)
        }
      }
      path.removeLast()
      state[i] = 2
    }
    for i in stages.indices where state[i] == 0 { walk(i) }
  }

  /// Every model path a stage names (mergekit-multi rewrites each one that is a stage's name):
  /// its models, base models, tokenizer source and the models `tokens:` entries name.
  static func references(of stage: MergeConfiguration) -> [ModelReference] {
    var result = stage.referencedModels
    if case .model(let m)? = stage.tokenizerSource { result.append(m) }
    if case .model(let m)? = stage.tokenizer?.source { result.append(m) }
    for entry in stage.tokenizer?.tokens ?? [] {
      switch entry.source {
      case .model(let m)?, .modelToken(let m, _, _)?: result.append(m)
      default: break
      }
    }
    return result
  }
}

extension Diagnostic.Message {
  fileprivate static func tooManyStages(_ count: Int) -> Self {
    Self(
      "too-many-stages",
      "the recipe has \(count) stages; merge runs at most \(StageGraph.limit) (this is stage \(StageGraph.limit + 1))"
    )
  }
  fileprivate static func duplicateStage(_ name: String) -> Self {
    Self("duplicate-stage", "two stages are named '\(name)'; each stage needs its own name")
  }
  fileprivate static let severalUnnamed = Self(
    "unnamed-stages",
    "this stage has no 'name', and neither has an earlier one; only the final stage may be unnamed (mergekit-multi refuses several)"
  )
  fileprivate static func stageCycle(_ names: [String]) -> Self {
    if names.count == 2 {
      return Self("stage-cycle", "stage '\(names[0])' reads its own output")
    }
    return Self(
      "stage-cycle",
      "the stages form a cycle: "
        + names.map { "'\($0)'" }.joined(separator: " reads ")
        + "; a stage can only read stages that do not read it")
  }
  fileprivate static func unusedStage(_ name: String, output: String) -> Self {
    Self(
      "unused-stage",
      "stage '\(name)' is not used: the output is \(output), which does not read it, directly or through another stage; remove it, or use its name as a model"
    )
  }
}
