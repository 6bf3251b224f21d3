import Foundation
import MergeModel
import Testing
import _TestSupport

/// Recipes with a tokenizer section or a chat template (Tests/Parity/tok-recipes) against
/// mergekit 0.1.5's whole outputs: tensors, which files are written, tokenizer, template.
@Suite struct TokenizerParityTests {
  static let recipes = [
    "tok_base_linear", "tok_chat_auto", "tok_chat_inline", "tok_model_ties", "tok_tokens_block",
    "tok_union_linear", "tok_union_ties",
  ]

  /// `value` with every object's members sorted by key, less `dropping`.
  static func canonical(_ value: JSONValue, dropping: Set<String> = []) -> JSONValue {
    switch value {
    case .object(let members):
      return .object(
        members.filter { !dropping.contains($0.0) }.sorted { $0.0 < $1.0 }.map {
          ($0.0, canonical($0.1))
        })
    case .array(let items): return .array(items.map { canonical($0) })
    default: return value
    }
  }

  static func json(_ path: String) throws -> JSONValue {
    try JSONValue.parse(try FileSystem.read(path))
  }

  @Test(
    "tok_* recipes give mergekit's tensors, files, tokenizer, config and template",
    arguments: recipes)
  func parity(_ name: String) throws {
    let dir = TemporaryDirectory()
    let out = dir.path + "/out"
    let expected = Repository.parity + "/expected/" + name
    let run = try runProcess(
      Repository.mergeExecutable,
      ["run", Repository.parity + "/tok-recipes/\(name).yml", out, "--no-cache"])
    #expect(run.status == 0, "\(run.stderr)")
    try HubTests.expectParity(out, expected)
    let written = try FileManager.default.contentsOfDirectory(atPath: out)
      .filter { $0 != "README.md" && $0 != "mergekit_config.yml" }.sorted()
    #expect(written == (try FileManager.default.contentsOfDirectory(atPath: expected)).sorted())
    #expect(
      Self.canonical(try Self.json(out + "/tokenizer.json"))
        == Self.canonical(try Self.json(expected + "/tokenizer.json")))
    #expect(
      Self.canonical(try Self.json(out + "/tokenizer_config.json"))
        == Self.canonical(
          try Self.json(expected + "/tokenizer_config.json"),
          dropping: ["is_local", "local_files_only"]))
    #expect(
      (try Self.json(out + "/config.json"))["vocab_size"]
        == (try Self.json(expected + "/config.json"))["vocab_size"])
    if written.contains("chat_template.jinja") {
      #expect(
        FileManager.default.contents(atPath: out + "/chat_template.jinja")
          == FileManager.default.contents(atPath: expected + "/chat_template.jinja"))
    }
  }

  @Test(
    "a changed tokens: choice (the base's row for <|im_end|>, so every task vector's) is a new cache key"
  )
  func cacheKeys() throws {
    let dir = TemporaryDirectory()
    let models = Repository.parity + "/models/tiny-chat"
    func recipe(_ source: String) -> String {
      dir.write(
        "r-\(source).yml",
        """
        merge_method: ties
        base_model: \(models)/base
        models:
          - model: \(models)/ft-chatml
            parameters: {weight: 0.6, density: 0.5}
          - model: \(models)/ft-tools
            parameters: {weight: 0.5, density: 0.7}
        tokenizer:
          source: union
          tokens:
            <|im_end|>:
              source: \(models)/\(source)
        dtype: float32

        """)
    }
    let cache = dir.path + "/cache"
    func run(_ source: String, _ out: String, _ extra: [String]) throws -> Data? {
      let r = try runProcess(
        Repository.mergeExecutable, ["run", recipe(source), dir.path + "/" + out] + extra)
      #expect(r.status == 0, "\(r.stderr)")
      return FileManager.default.contents(atPath: dir.path + "/\(out)/model.safetensors")
    }
    let first = try run("ft-chatml", "a", ["--cache", cache])
    let cached = try run("ft-tools", "b", ["--cache", cache])
    let fresh = try run("ft-tools", "c", ["--no-cache"])
    #expect(cached == fresh)
    #expect(first != fresh)
  }
}
