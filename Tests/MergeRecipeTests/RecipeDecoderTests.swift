import Testing
import _TestSupport

@testable import MergeRecipe

@Suite struct RecipeDecoderTests {
  /// Decodes `text`, severities as the policy (`--allow-unknown` or not) decides them.
  func decode(_ text: String, allowUnknown: Bool = false) -> (Recipe?, [Diagnostic]) {
    let (recipe, diagnostics) = RecipeDecoder.decode(text, file: "r.yml")
    return (recipe, DiagnosticPolicy(allowUnknown: allowUnknown).applied(to: diagnostics))
  }

  @Test("the whole configuration language decodes with locations")
  func fullLanguage() throws {
    let marked = MarkedText(
      """
      merge_method: ties
      base_model: 1️⃣org/base@v1.0
      models:
        - model: 2️⃣./ft0+./lora
          parameters:
            weight: [0.2, 0.8]
            density:
              - filter: 3️⃣mlp
                value: 0.5
              - value: [0.1, 0.9]
        - model:
            model: {path: ./ft1, revision: main}
            override_architecture: MistralForCausalLM
          parameters: {weight: 1}
      parameters:
        normalize: true
        lambda: 1e-1
      dtype: bfloat16
      out_dtype: float16
      tokenizer_source: union
      chat_template: chatml
      """)
    let (recipe, diagnostics) = decode(marked.text)
    #expect(diagnostics.isEmpty)
    let stage = try #require(recipe?.stages.first)
    #expect(stage.mergeMethod?.value == "ties")
    #expect(stage.baseModel?.model.path.value == "org/base")
    #expect(stage.baseModel?.model.path.range.start == marked["1️⃣"])
    #expect(stage.baseModel?.model.revision?.value == "v1.0")
    #expect(stage.baseModel?.model.revision?.range.start.column == 22)
    let models = try #require(stage.models?.value)
    #expect(models.count == 2)
    #expect(models[0].model.model.path.value == "./ft0")
    #expect(models[0].model.model.path.range.start == marked["2️⃣"])
    #expect(models[0].model.lora?.path.value == "./lora")
    guard case .gradient(let w, _)? = models[0].parameters?["weight"] else {
      Issue.record("weight is not a gradient")
      return
    }
    #expect(w.map(\.value) == [.float(0.2), .float(0.8)])
    guard case .conditional(let entries, _)? = models[0].parameters?["density"] else {
      Issue.record("density is not conditional")
      return
    }
    #expect(entries.count == 2)
    #expect(entries[0].filter?.value == "mlp")
    #expect(entries[0].filter?.range.start == marked["3️⃣"])
    #expect(entries[1].filter == nil)
    #expect(models[1].model.model.revision?.value == "main")
    #expect(models[1].model.overrideArchitecture?.value == "MistralForCausalLM")
    guard case .scalar(let lambda)? = stage.parameters?["lambda"] else {
      Issue.record("lambda missing")
      return
    }
    #expect(lambda.value == .float(0.1))
    #expect(stage.dtype?.value == "bfloat16")
    #expect(stage.outDtype?.value == "float16")
    #expect(stage.chatTemplate?.value == "chatml")
    if case .union? = stage.tokenizerSource {
    } else {
      Issue.record("tokenizer_source is not union")
    }
  }

  @Test("slices, per-slice base models and modules decode")
  func slicesAndModules() throws {
    let (recipe, diagnostics) = decode(
      """
      name: first
      merge_method: passthrough
      slices:
        - sources:
            - model: a
              layer_range: [0, 3]
              parameters: {scale: 0.5}
          base_model: b
          residual_weight: 0.1
        - sources:
            - {model: c, layer_range: [2, 4]}
      ---
      name: second
      merge_method: linear
      modules:
        text_decoder:
          models:
            - model: x
              parameters: {weight: 1}
      """)
    #expect(diagnostics.isEmpty)
    let recipeValue = try #require(recipe)
    #expect(recipeValue.stages.count == 2)
    let slices = try #require(recipeValue.stages[0].slices?.value)
    #expect(slices.count == 2)
    #expect(slices[0].sources[0].layerRange?.start == 0)
    #expect(slices[0].sources[0].layerRange?.end == 3)
    #expect(slices[0].baseModel?.model.path.value == "b")
    #expect(slices[0].residualWeight?.value == 0.1)
    #expect(slices[1].sources[0].layerRange?.count == 2)
    let modules = try #require(recipeValue.stages[1].modules?.value)
    #expect(modules[0].name.value == "text_decoder")
    #expect(modules[0].models?.value.first?.model.model.path.value == "x")
    #expect(recipeValue.stages[1].name?.value == "second")
  }

  @Test("an unknown key is an error with a suggestion, or a warning with --allow-unknown")
  func unknownKeys() throws {
    let text = "merge_method: ties\nbasemodel: x\nmodels:\n  - model: a\n    paramters: {}\n"
    let (_, errors) = decode(text)
    #expect(
      errors.map(\.message.text) == [
        "unknown key 'basemodel' in the recipe; did you mean 'base_model'?",
        "unknown key 'paramters' in a model entry; did you mean 'parameters'?",
      ])
    #expect(errors.allSatisfy { $0.severity == .error && $0.id == "unknown-key" })
    #expect(errors[0].range?.start == SourceLocation(line: 2, column: 1))
    #expect(errors[1].range?.start == SourceLocation(line: 5, column: 5))
    // The first unknown-key error, and only it, says how to make them warnings.
    #expect(errors.map(\.notes.count) == [1, 0])
    #expect(errors[0].notes.first?.message == DiagnosticPolicy.allowUnknownNote)
    let (_, warnings) = decode(text, allowUnknown: true)
    #expect(warnings.count == 2)
    #expect(warnings.allSatisfy { $0.severity == .warning && $0.notes.isEmpty })
  }

  struct BadCase: Sendable, CustomTestStringConvertible {
    var name: String
    var text: String
    var message: String
    var testDescription: String { name }
  }

  @Test(
    "structural mistakes are located errors",
    arguments: [
      BadCase(
        name: "models and slices",
        text:
          "merge_method: x\nmodels: [{model: a}]\nslices: [{sources: [{model: a, layer_range: [0, 1]}]}]\n",
        message:
          "'models' and 'slices' cannot be used together; a recipe uses exactly one of 'models', 'slices' and 'modules'"
      ),
      BadCase(
        name: "no models", text: "merge_method: ties\n",
        message: "the recipe needs one of 'models', 'slices' or 'modules'"),
      BadCase(
        name: "no method", text: "models: [{model: a}]\n",
        message: "the recipe needs 'merge_method'"),
      BadCase(
        name: "bare model string", text: "merge_method: x\nmodels:\n  - a\n",
        message: "expected an entry of 'models' to be a mapping, found a string"),
      BadCase(
        name: "layer range of one",
        text: "merge_method: x\nslices: [{sources: [{model: a, layer_range: [1]}]}]\n",
        message: "'layer_range' must be a list of two layer indices [start, end], found a list"),
      BadCase(
        name: "layer range of floats",
        text: "merge_method: x\nslices: [{sources: [{model: a, layer_range: [0, 1.5]}]}]\n",
        message: "expected an integer, found a number '1.5'"),
      BadCase(
        name: "mixed parameter list",
        text: "merge_method: x\nmodels: [{model: a, parameters: {weight: [1, {value: 2}]}}]\n",
        message:
          "'weight' mixes numbers and {filter, value} entries; use a list of one or the other"),
      BadCase(
        name: "filter without value",
        text: "merge_method: x\nmodels: [{model: a, parameters: {weight: [{filter: mlp}]}}]\n",
        message: "a 'weight' entry needs 'value'"),
      BadCase(
        name: "two @", text: "merge_method: x\nmodels: [{model: a@b@c}]\n",
        message: "'a@b@c' is not a model reference; write 'path', 'path@revision' or 'path+lora'"),
      BadCase(
        name: "duplicate key", text: "merge_method: x\nmerge_method: y\nmodels: [{model: a}]\n",
        message: "duplicate key 'merge_method'"),
      BadCase(
        name: "empty file", text: "# nothing\n", message: "the recipe is empty"),
      BadCase(
        name: "not a mapping", text: "- a\n- b\n",
        message: "expected a recipe to be a mapping, found a list"),
    ])
  func structuralErrors(_ c: BadCase) {
    let (_, diagnostics) = decode(c.text)
    #expect(diagnostics.contains { $0.message.text == c.message && $0.isError && $0.range != nil })
  }
}
