import Foundation
import MergeRecipe
import Testing
import _TestSupport

@testable import MergeCompiler

/// Multi-stage recipes (mergekit-multi) and `modules`: which stage is the output, the order
/// stages are resolved in, and every mistake in the stage graph with its message and place.
@Suite struct StageTests {
  /// A linear stage named `name` of `models` (paths under the workspace's `models/`).
  static func linear(_ name: String?, _ models: [String]) -> String {
    var text = name.map { "name: \($0)\n" } ?? ""
    text += "merge_method: linear\nmodels:\n"
    for m in models { text += "  - model: \(m)\n    parameters: {weight: 1}\n" }
    return text
  }

  /// Compiles `text` to its graphs.
  func compile(_ text: String, everyStageTensor: Bool = false) -> Compilation {
    var options = CompileOptions()
    options.allStageTensors = everyStageTensor
    let workspace = ModelWorkspace()
    return Compiler.compile(path: workspace.recipe(text), options: options)
  }

  @Test("a later stage reads an earlier one: only the tensors it reads are compiled")
  func twoStages() throws {
    let text =
      Self.linear("first", ["models/ft0", "models/ft1"]) + "---\n"
        + """
        name: second
        merge_method: passthrough
        slices:
          - sources:
              - model: first
                layer_range: [0, 2]

        """
    let compilation = compile(text)
    #expect(compilation.diagnostics.isEmpty, "\(compilation.diagnostics.map(\.message.text))")
    let merge = try #require(compilation.merge)
    // The output reads layers 0 and 1 of 'first', and the tensors outside the layers.
    #expect(merge.plan.models.map(\.stage) == ["first"])
    #expect(merge.plan.outputLayerCount == 2)
    let stage = try #require(merge.stage("first"))
    #expect(Set(stage.graphs.keys) == Set(merge.plan.tensors.map(\.name)))
    #expect(stage.plan.tensors.count == 39)
    #expect(stage.graphs.count == 21)
    #expect(stage.recipeText.hasPrefix("name: first\nmerge_method: linear\n"))
    #expect(!stage.recipeText.contains("---"))
    // --intermediates compiles all of them.
    let all = try #require(compile(text, everyStageTensor: true).merge)
    #expect(all.stage("first")?.graphs.count == 39)
  }

  @Test(
    "as in mergekit-multi, a stage may read one defined after it; the output is the stage nothing reads"
  )
  func forwardReference() throws {
    let text =
      """
      name: final
      merge_method: slerp
      base_model: mid
      models:
        - model: mid
        - model: models/ft2
      parameters: {t: 0.5}
      ---

      """ + Self.linear("mid", ["models/ft0", "models/ft1"])
    let compilation = compile(text)
    #expect(compilation.diagnostics.isEmpty, "\(compilation.diagnostics.map(\.message.text))")
    let merge = try #require(compilation.merge)
    #expect(merge.plan.method.spec.name == "slerp")
    #expect(merge.stages.map(\.name) == ["mid"])
  }

  @Test("the unnamed stage is the output wherever it stands")
  func unnamedOutput() throws {
    let text =
      """
      merge_method: passthrough
      slices:
        - sources:
            - model: a
              layer_range: [0, 4]
      ---

      """ + Self.linear("a", ["models/ft0", "models/ft1"])
    let merge = try #require(compile(text).merge)
    #expect(merge.plan.method.spec.name == "passthrough")
    #expect(merge.stages.map(\.name) == ["a"])
  }

  @Test("a cycle is an error at the reference that closes it, naming the stages in order")
  func cycle() {
    let marked = MarkedText(
      """
      name: a
      merge_method: linear
      models:
        - model: b
          parameters: {weight: 1}
        - model: models/ft0
          parameters: {weight: 1}
      ---
      name: b
      merge_method: linear
      models:
        - model: 1️⃣a
          parameters: {weight: 1}
        - model: models/ft1
          parameters: {weight: 1}
      ---
      name: c
      merge_method: linear
      models:
        - model: 2️⃣c
          parameters: {weight: 1}
      """)
    let report = ModelWorkspace().check(marked.text)
    let cycles = report.diagnostics.filter { $0.id == "stage-cycle" }
    #expect(
      cycles.map(\.message.text) == [
        "the stages form a cycle: 'a' reads 'b' reads 'a'; a stage can only read stages that do not read it",
        "stage 'c' reads its own output",
      ])
    #expect(cycles.map { $0.range?.start } == [marked["1️⃣"], marked["2️⃣"]])
    // Nothing else is said of the references into the cycle.
    #expect(
      report.diagnostics.allSatisfy { $0.id == "stage-cycle" },
      "\(report.diagnostics.map(\.message.text))")
  }

  @Test("a misspelt stage name is a model that does not exist, and the stage is suggested")
  func unknownName() {
    let marked = MarkedText(
      Self.linear("first", ["models/ft0", "models/ft1"]) + "---\n"
        + """
        merge_method: linear
        models:
          - model: 1️⃣frist
            parameters: {weight: 1}
        """)
    let report = ModelWorkspace().check(marked.text)
    let error = report.diagnostics.first { $0.isError && $0.range?.start == marked["1️⃣"] }
    #expect(error?.message.text.contains("'frist'") == true)
    #expect(
      error?.notes.map(\.message).contains("did you mean stage 'first'?") == true,
      "\(report.diagnostics.map(\.message.text)) \(String(describing: error?.notes))")
  }

  @Test("a stage the output does not read is an error at its name")
  func unusedStage() {
    let marked = MarkedText(
      "name: 1️⃣spare\n" + Self.linear(nil, ["models/ft0", "models/ft1"]) + "---\n"
        + Self.linear("kept", ["models/ft0", "models/ft2"]) + "---\n"
        + Self.linear("out", ["kept", "models/ft1"]))
    let report = ModelWorkspace().check(marked.text)
    let unused = report.diagnostics.filter { $0.id == "unused-stage" }
    #expect(
      unused.map(\.message.text) == [
        "stage 'spare' is not used: the output is stage 'out', which does not read it, directly or through another stage; remove it, or use its name as a model"
      ])
    #expect(unused.first?.range?.start == marked["1️⃣"])
    #expect(report.errorCount == 1)
  }

  @Test("names are unique, and only one stage may be unnamed")
  func names() {
    let marked = MarkedText(
      Self.linear("a", ["models/ft0", "models/ft1"]) + "---\n"
        + "name: 1️⃣a\n" + Self.linear(nil, ["models/ft0", "models/ft2"]) + "---\n"
        + Self.linear(nil, ["a", "models/ft1"]) + "---\n"
        + "2️⃣" + Self.linear(nil, ["a", "models/ft2"]))
    let report = ModelWorkspace().check(marked.text)
    let duplicate = report.diagnostics.first { $0.id == "duplicate-stage" }
    #expect(duplicate?.message.text == "two stages are named 'a'; each stage needs its own name")
    #expect(duplicate?.range?.start == marked["1️⃣"])
    #expect(duplicate?.notes.first?.range?.start == SourceLocation(line: 1, column: 7))
    let unnamed = report.diagnostics.first { $0.id == "unnamed-stages" }
    #expect(unnamed?.range?.start == marked["2️⃣"])
  }

  @Test("a stage with an error of its own does not make errors in the stages that read it")
  func noCascade() {
    let text =
      Self.linear("first", ["models/ft0", "models/nothing"]) + "---\n"
      + Self.linear(nil, ["first", "models/ft1"])
    let report = ModelWorkspace().check(text)
    #expect(report.errorCount == 1)
    #expect(report.diagnostics.first?.range?.start.line == 6)
  }

  @Test("a later stage is checked against an earlier stage's output: its layers")
  func checkedAgainstOutput() {
    let marked = MarkedText(
      """
      name: two
      merge_method: passthrough
      slices:
        - sources:
            - model: models/ft0
              layer_range: [0, 2]
      ---
      merge_method: passthrough
      slices:
        - sources:
            - model: two
              layer_range: 1️⃣[0, 3]
      """)
    let report = ModelWorkspace().check(marked.text)
    let error = report.diagnostics.first { $0.isError }
    #expect(error?.range?.start == marked["1️⃣"])
    #expect(
      error?.message.text.contains("2 layers") == true, "\(String(describing: error?.message.text))"
    )
  }

  @Test(
    "modules: the one module of a single-module model runs; others are an error naming the module")
  func modules() throws {
    let one = """
      merge_method: linear
      modules:
        default:
          parameters: {weight: 0.5}
          models:
            - model: models/ft0
            - model: models/ft1
      """
    let merge = try #require(compile(one).merge)
    #expect(merge.plan.tensors.count == 39)
    #expect(merge.plan.tensors[0].perInput[0]["weight"]?.value.number == 0.5)
    let marked = MarkedText(
      """
      merge_method: linear
      modules:
        1️⃣text_decoder:
          models:
            - model: models/ft0
              parameters: {weight: 1}
        2️⃣vision_tower:
          models:
            - model: models/ft1
              parameters: {weight: 1}
      """)
    let report = ModelWorkspace().check(marked.text)
    let errors = report.diagnostics.filter { $0.id == "unsupported-module" }
    #expect(errors.map { $0.range?.start } == [marked["1️⃣"], marked["2️⃣"]])
    #expect(
      errors.first?.message.text
        == "module 'text_decoder': merge cannot split LlamaForCausalLM into modules yet; it merges single-module models, whose one module is 'default' (or use 'models' or 'slices')"
    )
  }
}

extension StageTests {
  @Test("a recipe of more stages than merge runs is one error, before any stage is checked")
  func tooManyStages() {
    var text = ""
    for i in 0...StageGraph.limit {
      text += (i == 0 ? "" : "---\n") + "name: s\(i)\nmerge_method: linear\nmodels:\n"
      text += "  - model: \(i == 0 ? "models/ft0" : "s\(i - 1)")\n    parameters: {weight: 1}\n"
    }
    let report = ModelWorkspace().check(text)
    #expect(report.diagnostics.map(\.id) == ["too-many-stages"])
    // Each stage is 6 lines with its separator: stage 1,000 (0-based) starts at line 6,001.
    #expect(report.diagnostics.first?.range?.start.line == 1 + 6 * StageGraph.limit)
  }
}
