import Foundation
import MergeModel
import Testing
import _TestSupport

/// Tokenizers read and output vocabularies built as mergekit 0.1.5 builds them, against its
/// outputs (Tests/Parity/expected/tok_*, made from Tests/Parity/models/tiny-chat).
@Suite struct TokenizerTests {
  static let models = Repository.parity + "/models/tiny-chat"

  static func tokenizer(_ name: String) throws -> TokenizerFiles {
    try TokenizerFiles(folder: models + "/" + name)
  }

  static func expected(_ recipe: String, _ file: String) throws -> JSONValue {
    try JSONValue.parse(try FileSystem.read(Repository.parity + "/expected/\(recipe)/\(file)"))
  }

  @Test(
    "tokenizer.json, tokenizer_config.json and the template are read as transformers reads them")
  func reading() throws {
    let base = try Self.tokenizer("base")
    #expect(base.size == 1024 && base.vocabulary.count == 1024)
    #expect(base.added.map(\.content) == ["<unk>", "<s>", "</s>"])
    #expect(base.template == nil)
    let chatml = try Self.tokenizer("ft-chatml")
    #expect(chatml.size == 1026 && chatml.vocabulary["<|im_end|>"] == 1025)
    #expect(chatml.template?.hasPrefix("{% for message in messages %}") == true)
    let tools = try Self.tokenizer("ft-tools")
    #expect(tools.added.map(\.id) == [0, 1, 2, 1024, 1025, 1026])
    #expect(tools.added[3].content == "<tool_call>" && !tools.added[3].special)
    #expect(tools.added[5].special && !tools.added[5].normalized)
    // chat_template.jinja: the same text as ft-chatml's, followed by a newline.
    #expect(tools.template == (chatml.template ?? "") + "\n")
  }

  @Test(
    "union: the base's tokens, then each model's added tokens in id order with their flags, then the tokens: keys",
    arguments: [
      ("tok_union_linear", ["base", "ft-chatml", "ft-tools"], [String]()),
      ("tok_union_ties", ["ft-chatml", "ft-tools"], []),
      ("tok_chatml", ["base", "ft-chatml"], []),
      ("tok_chat_auto", ["ft-chatml", "ft-tools"], []),
      (
        "tok_tokens_block", ["base", "ft-chatml", "ft-tools"],
        ["<|im_end|>", "<tool_call>", "<|pad|>"]
      ),
    ])
  func union(_ recipe: String, _ models: [String], _ extra: [String]) throws {
    let base = try Self.tokenizer("base")
    let tokenizers = try ([base] + models.map(Self.tokenizer))
    let limits = tokenizers.map { Optional($0.size) }
    let vocabulary = OutputVocabulary.union(
      base: base, models: tokenizers, limits: limits, extra: extra)
    #expect(
      canonicalJSON(vocabulary.tokenizerJSON)
        == canonicalJSON(try Self.expected(recipe, "tokenizer.json")))
    let config = try #require(vocabulary.tokenizerConfig)
    #expect(
      canonicalJSON(config)
        == canonicalJSON(
          try Self.expected(recipe, "tokenizer_config.json"),
          dropping: ["is_local", "local_files_only"]))
    if extra.isEmpty {
      #expect(.integer(vocabulary.size) == (try Self.expected(recipe, "config.json"))["vocab_size"])
    }
  }

  @Test(
    "a named tokenizer (base, or a model) is that tokenizer as it is",
    arguments: [
      ("tok_base_linear", "base"), ("tok_chat_inline", "base"), ("tok_model_ties", "ft-chatml"),
    ])
  func named(_ recipe: String, _ model: String) throws {
    let vocabulary = OutputVocabulary(source: try Self.tokenizer(model))
    #expect(vocabulary.added.isEmpty)
    #expect(
      canonicalJSON(vocabulary.tokenizerJSON)
        == canonicalJSON(try Self.expected(recipe, "tokenizer.json")))
    #expect(
      canonicalJSON(try #require(vocabulary.tokenizerConfig))
        == canonicalJSON(
          try Self.expected(recipe, "tokenizer_config.json"),
          dropping: ["is_local", "local_files_only"]))
  }
}

extension TokenizerTests {
  @Test(
    "chat_template: auto takes the most common stripped template; an inline template is used verbatim"
  )
  func templates() throws {
    let models = try ["base", "ft-chatml", "ft-tools"].map(Self.tokenizer)
    let auto = try String(
      contentsOfFile: Repository.parity + "/expected/tok_chat_auto/chat_template.jinja",
      encoding: .utf8)
    #expect(ChatTemplate.resolve("auto", models: models) == .success(auto))
    #expect(ChatTemplate.resolve("auto", models: [models[0]]) == .success(nil))
    // A tie goes to the template seen first.
    var other = models[2]
    other.template = "{{ 'another template entirely' }}"
    #expect(
      ChatTemplate.resolve("auto", models: [other, models[1]])
        == .success("{{ 'another template entirely' }}"))
    // As the recipe's double-quoted YAML gives it: `\n` is a line break.
    let inline =
      "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    let written = try String(
      contentsOfFile: Repository.parity + "/expected/tok_chat_inline/chat_template.jinja",
      encoding: .utf8)
    #expect(ChatTemplate.resolve(inline, models: models) == .success(written))
    #expect(
      ChatTemplate.resolve("chatml", models: models) == .failure(.builtInNotAvailable("chatml")))
    #expect(
      ChatTemplate.resolve("{{ short }}", models: models) == .failure(.invalid("{{ short }}")))
    #expect(ChatTemplate.resolve("vicuna", models: models) == .failure(.invalid("vicuna")))
  }
}
