import Foundation
import MergeRecipe
import Testing
import _TestSupport

@testable import MergeCompiler

extension ModelWorkspace {
  /// Checks recipe `text` as `merge check` does (through resolution, before any tensor data).
  func check(_ text: String, allowUnknown: Bool = false, allowNonFinite: Bool = false)
    -> Compilation
  {
    var options = CompileOptions()
    options.phase = .resolution
    options.policy = DiagnosticPolicy(allowUnknown: allowUnknown, allowNonFinite: allowNonFinite)
    return Compiler.compile(path: recipe(text), options: options)
  }

  var recipePath: String { path("recipe.yml") }
}

@Suite struct RecipeCheckerTests {
  @Test("every parity recipe passes the check")
  func parityRecipes() throws {
    let folder = Repository.parity + "/recipes"
    let names = try FileManager.default.contentsOfDirectory(atPath: folder).filter {
      $0.hasSuffix(".yml")
    }.sorted()
    #expect(names.count == 26)
    for name in names {
      let report = Compiler.compile(path: folder + "/" + name)
      #expect(report.diagnostics.isEmpty, "\(name): \(report.diagnostics.map(\.message.text))")
    }
  }

  struct Case: Sendable, CustomTestStringConvertible {
    var name: String
    var recipe: String
    var message: String
    var testDescription: String { name }
  }

  static let base = "models/base"

  /// The mistakes issue 2 names, each with a marker at the place the error must point.
  static let rejections: [Case] = [
    Case(
      name: "method typo",
      recipe: """
        merge_method: 1️⃣dare-ties
        base_model: models/base
        models:
          - model: models/ft0
            parameters: {weight: 1, density: 0.5}
        """,
      message: "unknown merge method 'dare-ties'; did you mean 'dare_ties'?"),
    Case(
      name: "parameter typo",
      recipe: """
        merge_method: ties
        base_model: models/base
        models:
          - model: models/ft0
            parameters: {weight: 1, 1️⃣desnity: 0.5}
        """,
      message: "unknown parameter 'desnity' for ties; did you mean 'density'?"),
    Case(
      name: "top-level typo",
      recipe: """
        merge_method: linear
        1️⃣basemodel: models/base
        models:
          - model: models/ft0
            parameters: {weight: 1}
        """,
      message: "unknown key 'basemodel' in the recipe; did you mean 'base_model'?"),
    Case(
      name: "missing model folder",
      recipe: """
        merge_method: linear
        models:
          - model: 1️⃣models/ft7
            parameters: {weight: 1}
        """,
      message: "model folder 'models/ft7' does not exist"),
    Case(
      name: "density 1.7",
      recipe: """
        merge_method: ties
        base_model: models/base
        models:
          - model: models/ft0
            parameters: {weight: 1, density: 1️⃣1.7}
        """,
      message: "'density' must be in [0, 1], found 1.7"),
    Case(
      name: "slerp with three models",
      recipe: """
        merge_method: slerp
        base_model: models/ft0
        1️⃣models:
          - model: models/ft0
          - model: models/ft1
          - model: models/ft2
        parameters: {t: 0.5}
        """,
      message: "slerp merges exactly 2 models (the base model included), found 3"),
    Case(
      name: "slerp without t",
      recipe: """
        merge_method: 1️⃣slerp
        base_model: models/ft0
        models:
          - model: models/ft0
          - model: models/ft1
        """,
      message: "slerp needs parameter 't'; set it under the recipe's 'parameters'"),
    Case(
      name: "layer_range past the last layer",
      recipe: """
        merge_method: passthrough
        slices:
          - sources:
              - model: models/ft0
                layer_range: 1️⃣[2, 5]
        """,
      message:
        "layer_range [2, 5] goes past the last layer of 'models/ft0', which has 4 layers (0 to 3)"),
    Case(
      name: "slices of unequal length",
      recipe: """
        merge_method: linear
        slices:
          - sources:
              - model: models/ft0
                layer_range: [0, 3]
                parameters: {weight: 0.5}
              - model: models/ft1
                layer_range: 1️⃣[0, 2]
                parameters: {weight: 0.5}
        """,
      message:
        "all sources of a slice must take the same number of layers: this one takes 2, the first takes 3"
    ),
    Case(
      name: "a string where a number belongs",
      recipe: """
        merge_method: task_arithmetic
        base_model: models/base
        models:
          - model: models/ft0
            parameters: {weight: 1️⃣high}
        """,
      message: "'weight' must be a number, found a string 'high'"),
    Case(
      name: "models with slices",
      recipe: """
        merge_method: passthrough
        models:
          - model: models/ft0
        1️⃣slices:
          - sources:
              - model: models/ft0
                layer_range: [0, 4]
        """,
      message:
        "'models' and 'slices' cannot be used together; a recipe uses exactly one of 'models', 'slices' and 'modules'"
    ),
    Case(
      name: "ties without a base model",
      recipe: """
        merge_method: 1️⃣ties
        models:
          - model: models/ft0
            parameters: {weight: 1, density: 0.5}
        """,
      message: "ties needs a base model; add 'base_model: PATH'"),
    Case(
      name: "a YAML syntax error",
      recipe: """
        merge_method: ties
        models:
          - model: models/ft0
            parameters: {weight: 1, density: 0.5
        base_model1️⃣: models/base
        """,
      message: "YAML syntax error: did not find expected ',' or '}'"),
    Case(
      name: "a duplicate key",
      recipe: """
        merge_method: linear
        models:
          - model: models/ft0
            parameters: {weight: 1}
        1️⃣merge_method: ties
        """,
      message: "duplicate key 'merge_method'"),
    Case(
      name: "dtype float8",
      recipe: """
        merge_method: linear
        models:
          - model: models/ft0
            parameters: {weight: 1}
        dtype: 1️⃣float8
        """,
      message: "unknown dtype 'float8'; did you mean 'float16'?"),
    Case(
      name: "DELLA with density ± epsilon outside (0, 1)",
      recipe: """
        merge_method: della
        base_model: models/base
        models:
          - model: models/ft0
            parameters: {weight: 1, density: 0.9, epsilon: 1️⃣0.15}
        """,
      message:
        "DELLA needs density ± epsilon inside (0, 1), but density 0.9 with epsilon 0.15 gives [0.75, 1.05]"
    ),
    Case(
      name: "a model listed twice (mergekit refuses duplicate merge inputs)",
      recipe: """
        merge_method: ties
        base_model: models/base
        models:
          - model: models/ft0
            parameters: {weight: 1, density: 0.5}
          - model: 1️⃣models/ft0
            parameters: {weight: 0.5, density: 0.5}
        """,
      message:
        "'models/ft0' is listed twice; list each model once (mergekit refuses duplicate merge inputs)"
    ),
    Case(
      name: "an empty list for a required per-model parameter",
      recipe: """
        merge_method: linear
        models:
          - model: 1️⃣models/ft0
            parameters: {weight: []}
        """,
      message:
        "no value of 'weight' applies to tensor 'model.embed_tokens.weight' of 'models/ft0' (no filter matches it)"
    ),
    Case(
      name: "too few models, counted in words",
      recipe: """
        merge_method: slerp
        base_model: models/base
        1️⃣models:
          - model: models/base
        parameters: {t: 0.5}
        """,
      message: "slerp needs exactly 2 models, found 1"),
    Case(
      name: "no models, counted in words",
      recipe: """
        merge_method: linear
        1️⃣models: []
        """,
      message: "linear needs at least 1 model, found 0"),
  ]

  @Test(
    "what merge does not carry yet is an error, not a silently different model: a built-in chat template name"
  )
  func notImplemented() throws {
    let marked = MarkedText(
      """
      merge_method: linear
      models:
        - model: models/ft0
          parameters: {weight: 1}
      tokenizer_source: union
      chat_template: 1️⃣chatml
      """)
    let report = ModelWorkspace().check(marked.text)
    #expect(report.diagnostics.map(\.id) == ["bad-chat-template"])
    #expect(report.diagnostics.map(\.range?.start) == [marked["1️⃣"]])
    #expect(report.diagnostics.allSatisfy { $0.isError })
    #expect(
      report.diagnostics.first?.message.text
        == "chat_template: the built-in template 'chatml' is not available yet; write the template inline"
    )
  }

  @Test("each mistake is a located, specific error", arguments: rejections)
  func rejection(_ c: Case) throws {
    let marked = MarkedText(c.recipe)
    let report = ModelWorkspace().check(marked.text)
    #expect(report.hasErrors)
    let location = try #require(marked["1️⃣"])
    let match = report.diagnostics.first { $0.message.text == c.message }
    #expect(
      match != nil,
      "got: \(report.diagnostics.map { "\($0.range?.start.description ?? "-") \($0.message.text)" })"
    )
    #expect(match?.severity == .error)
    #expect(match?.range?.start == location)
  }

  @Test("DELLA's density ± epsilon is checked on each tensor's values, gradients included")
  func dellaGradient() throws {
    // Neither end of the density gradient is in (0, 1), but layers 1 and 2 of 4 get 1/3 and
    // 2/3, which epsilon 0.4 takes out of (0, 1): found before any tensor data is read.
    let marked = MarkedText(
      """
      merge_method: della
      base_model: models/base
      models:
        - model: models/ft0
          parameters: {weight: 1, density: 2️⃣[0, 1], epsilon: 1️⃣0.4}
      """)
    let errors = ModelWorkspace().check(marked.text).diagnostics.filter(\.isError)
    #expect(
      errors.map(\.message.text) == [
        "DELLA needs density ± epsilon inside (0, 1), but density 0.33333333333 with epsilon 0.4 gives [-0.06666666667, 0.73333333333]",
        "DELLA needs density ± epsilon inside (0, 1), but density 0.66666666667 with epsilon 0.4 gives [0.26666666667, 1.06666666667]",
      ])
    #expect(errors.allSatisfy { $0.range?.start == marked["1️⃣"] && $0.id == "della-epsilon" })
    #expect(errors.first?.notes.first?.range?.start == marked["2️⃣"])
  }

  @Test("a failing recipe renders exactly, all errors at once")
  func fullRendering() {
    let workspace = ModelWorkspace()
    let text = """
      merge_method: ties
      base_model: models/base
      models:
        - model: models/ft0
          parameters: {weight: 1, desnity: 0.5}
        - model: models/ft1
          parameters: {density: 1.7}
      dtype: bf16
      """
    let report = workspace.check(text)
    let rendered = DiagnosticRenderer(sources: [workspace.recipePath: text]).render(
      report.diagnostics
    )
    .replacingOccurrences(of: workspace.recipePath, with: "recipe.yml")
    #expect(
      rendered == """
        recipe.yml:5:29: error: unknown parameter 'desnity' for ties; did you mean 'density'?
            parameters: {weight: 1, desnity: 0.5}
                                    ^~~~~~~
          note: ties takes: int8_mask, normalize, rescale, lambda, weight, density, orthogonalize, disjoint
          note: mergekit silently ignores unknown keys; pass --allow-unknown to report them as warnings
        recipe.yml:6:12: error: ties needs parameter 'weight' for each model, and 'models/ft1' has none
          - model: models/ft1
                   ^~~~~~~~~~
        recipe.yml:7:27: error: 'density' must be in [0, 1], found 1.7
            parameters: {density: 1.7}
                                  ^~~
        recipe.yml:8:8: error: unknown dtype 'bf16'; did you mean 'bfloat16'?
        dtype: bf16
               ^~~~
          note: expected one of bfloat16, float16, float32, float64

        """)
  }

  @Test("--allow-unknown turns unknown names into warnings and nothing else")
  func allowUnknown() {
    let text = """
      merge_method: ties
      base_model: models/base
      models:
        - model: models/ft0
          parameters: {weight: 1, desnity: 0.5}
      residual: 3
      """
    let strict = ModelWorkspace().check(text)
    #expect(strict.errorCount == 2)
    let lenient = ModelWorkspace().check(text, allowUnknown: true)
    #expect(lenient.errorCount == 0)
    #expect(lenient.warningCount == 2)
  }

  @Test("linear weights summing to 0 under normalize are refused unless --allow-nonfinite")
  func zeroWeightSum() {
    let marked = MarkedText(
      """
      merge_method: linear
      models:
        - model: models/ft0
          parameters: {weight: 1️⃣1}
        - model: models/ft1
          parameters: {weight: -1}
      """)
    let strict = ModelWorkspace().check(marked.text)
    #expect(strict.diagnostics.map(\.id) == ["zero-weight-sum"])
    #expect(strict.errorCount == 1)
    #expect(strict.diagnostics.first?.range?.start == marked["1️⃣"])
    let told = ModelWorkspace().check(marked.text, allowNonFinite: true)
    #expect(told.errorCount == 0)
    #expect(told.diagnostics.map(\.id) == ["zero-weight-sum"])
    // Without normalize the sum is a plain weighted sum: nothing to report.
    let plain = ModelWorkspace().check(marked.text + "\nparameters: {normalize: false}\n")
    #expect(plain.diagnostics.isEmpty)
    // A gradient that sums to 0 only on some layers is reported too.
    let layered = ModelWorkspace().check(
      """
      merge_method: linear
      models:
        - model: models/ft0
          parameters: {weight: [1, 0.5]}
        - model: models/ft1
          parameters: {weight: -0.5}
      """)
    #expect(layered.diagnostics.map(\.id) == ["zero-weight-sum"])
  }

  @Test("parameters that have no effect where they stand are warnings")
  func noEffectWarnings() {
    let report = ModelWorkspace().check(
      """
      merge_method: ties
      base_model: models/base
      models:
        - model: models/base
          parameters: {weight: 1}
        - model: models/ft0
          parameters: {weight: 1, lambda: 2}
      """)
    #expect(report.errorCount == 0)
    #expect(
      report.diagnostics.map(\.message.text) == [
        "'weight' has no effect on the base model of ties",
        "'lambda' has no effect here: ties takes one 'lambda' for the whole merge, so set it under the recipe's 'parameters'",
      ])
    #expect(report.diagnostics.allSatisfy { $0.severity == .warning })
  }

  @Test("linear with a base model not listed needs a weight for it, as mergekit merges it too")
  func linearBaseIsAnInput() {
    let report = ModelWorkspace().check(
      """
      merge_method: linear
      base_model: models/base
      models:
        - model: models/ft0
          parameters: {weight: 1}
      """)
    #expect(
      report.diagnostics.map(\.message.text) == [
        "linear has no base model: mergekit merges 'models/base' as one more input",
        "linear needs parameter 'weight' for each model, and 'models/base' has none",
      ])
  }

  @Test("values of every type are checked, lenient only where mergekit is")
  func valueTypes() {
    let report = ModelWorkspace().check(
      """
      merge_method: ties
      base_model: models/base
      models:
        - model: models/ft0
          parameters: {weight: "0.5", density: [0.2, true]}
      parameters:
        normalize: 1
        lambda: .nan
        int8_mask: maybe
      """)
    #expect(
      report.diagnostics.map(\.message.text) == [
        "'weight' is the quoted string '0.5'; it is read as the number 0.5, but write it without quotes",
        "'density' must be a number, found a boolean 'true'",
        "'normalize' is the number 1; it is read as true, but write true or false",
        "'lambda' must be a finite number",
        "'int8_mask' must be true or false, found a string",
      ])
  }

  @Test("a recipe that is not UTF-8 is reported, not repaired")
  func invalidUTF8() {
    let dir = TemporaryDirectory()
    let path = dir.write(
      "r.yml", bytes: Array("merge_method: ties\nname: ".utf8) + [0xFF, 0xFE, 0x0A])
    let report = Compiler.compile(path: path)
    #expect(report.diagnostics.map(\.message.text) == ["the recipe is not valid UTF-8 text"])
    #expect(report.recipe == nil)
  }

  @Test("a UTF-8 byte-order mark starts a recipe as PyYAML allows; positions ignore it")
  func byteOrderMark() {
    let dir = TemporaryDirectory()
    let path = dir.write(
      "r.yml", bytes: [0xEF, 0xBB, 0xBF] + Array("merge_method: linera\nmodels: []\n".utf8))
    let report = Compiler.compile(path: path)
    let first = report.diagnostics.first
    #expect(first?.message.text == "unknown merge method 'linera'; did you mean 'linear'?")
    #expect(first?.range?.start.description == "1:15")
  }

  @Test("a recipe over 16 MiB is refused as a recipe, not called a model")
  func oversizedRecipe() {
    let dir = TemporaryDirectory()
    let path = dir.write("r.yml", bytes: [UInt8](repeating: 0x23, count: (16 << 20) + 1))
    let report = Compiler.compile(path: path)
    #expect(
      report.diagnostics.map(\.message.text) == [
        "cannot read the recipe: '\(path)' is larger than 16 MiB, the most merge reads for such a file"
      ])
  }

  @Test("a base model that is not among a slice's sources is an error")
  func sliceBase() {
    let report = ModelWorkspace().check(
      """
      merge_method: ties
      slices:
        - sources:
            - model: models/ft0
              layer_range: [0, 4]
              parameters: {weight: 1}
          base_model: models/base
      """)
    #expect(
      report.diagnostics.map(\.message.text) == [
        "the base model 'models/base' must be one of the slice's sources"
      ])
  }

  @Test("folders without a model and Hub names get explanations")
  func modelFolders() throws {
    let workspace = ModelWorkspace()
    workspace.directory.write("empty/readme.txt", "nothing")
    workspace.directory.write("pickle/config.json", "{\"num_hidden_layers\": 2}")
    workspace.directory.write("pickle/pytorch_model.bin", "x")
    workspace.directory.write("badjson/config.json", "{not json")
    workspace.directory.write("badjson/model.safetensors", "x")
    let report = workspace.check(
      """
      merge_method: linear
      models:
        - model: empty
          parameters: {weight: 1}
        - model: pickle
          parameters: {weight: 1}
        - model: badjson
          parameters: {weight: 1}
        - model: meta-llama/Llama-3.1-8B
          parameters: {weight: 1}
      """)
    let messages = report.diagnostics.map(\.message.text)
    #expect(messages.count == 4)
    #expect(
      messages[0] == "'\(workspace.directory.path)/empty' holds no model: it has no config.json")
    #expect(
      messages[1].hasSuffix(
        "pickle/pytorch_model.bin: it is not a zip archive merge can read: no end-of-central-directory record"
      ), "\(messages[1])")
    #expect(messages[2].contains("invalid config.json"))
    #expect(
      messages[3].hasPrefix(
        "'meta-llama/Llama-3.1-8B' is not a local folder, and it is not in the Hugging Face cache (no "
      ))
    #expect(
      report.diagnostics[3].notes.map(\.message) == [
        "no folder '\(workspace.directory.path)/meta-llama/Llama-3.1-8B' or 'meta-llama/Llama-3.1-8B' from the working directory (as mergekit would) either",
        "with the network off (HF_HUB_OFFLINE) merge cannot fetch it: unset HF_HUB_OFFLINE, fetch it into that cache with 'hf download meta-llama/Llama-3.1-8B', or set HF_HOME or HF_HUB_CACHE to the cache that holds it",
      ])
  }

  @Test("checking reads config.json and safetensors headers only, never tensor data")
  func neverReadsTensorData() throws {
    let report = ModelWorkspace().check(
      """
      merge_method: ties
      base_model: models/base
      models:
        - model: models/ft0
          parameters: {weight: 1, density: 0.5}
        - model: models/ft1
          parameters: {weight: 1, density: 0.5}
      """)
    #expect(report.diagnostics.isEmpty)
    let plan = try #require(report.plan)
    #expect(plan.models.count == 3)
    for model in plan.models {
      #expect(model.weights.tensors.count == 39, "\(model.path)")
      // Tensor data is read only through the mapping, which is made on first use.
      #expect(model.weights.files.allSatisfy { !$0.isMapped }, "\(model.path)")
    }
  }

  @Test("a model whose safetensors header is malformed is reported at check time")
  func badHeader() {
    let workspace = ModelWorkspace()
    let config = try? String(
      contentsOfFile: Repository.tinyLlama + "/base/config.json", encoding: .utf8)
    workspace.directory.write("opaque/config.json", config ?? "")
    workspace.directory.write("opaque/model.safetensors", bytes: [0xFF, 0xFF, 0xFF])
    let report = workspace.check(
      """
      merge_method: task_arithmetic
      base_model: models/base
      models:
        - model: 1️⃣opaque
          parameters: {weight: 1}
      """.replacingOccurrences(of: "1️⃣", with: ""))
    #expect(
      report.diagnostics.map(\.message.text) == [
        "the model's weights cannot be used: \(workspace.directory.path)/opaque/model.safetensors: the file is 3 bytes, shorter than the 8-byte header length that starts a safetensors file"
      ])
    #expect(report.diagnostics.first?.range?.start == SourceLocation(line: 4, column: 12))
  }
}
