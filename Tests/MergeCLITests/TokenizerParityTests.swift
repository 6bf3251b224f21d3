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
      canonicalJSON(try Self.json(out + "/tokenizer.json"))
        == canonicalJSON(try Self.json(expected + "/tokenizer.json")))
    #expect(
      canonicalJSON(try Self.json(out + "/tokenizer_config.json"))
        == canonicalJSON(
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

extension TokenizerParityTests {
  @Test(
    "without a tokenizer section, vocabularies that differ are an error that names the tokens and suggests union; ids past vocab_size are a warning"
  )
  func compatibility() throws {
    let dir = TemporaryDirectory()
    let models = Repository.parity + "/models/tiny-chat"
    let recipe = dir.write(
      "r.yml",
      "merge_method: linear\nbase_model: \(models)/base\nmodels:\n  - model: \(models)/base\n    parameters: {weight: 0.5}\n  - model: \(models)/ft-tools\n    parameters: {weight: 0.5}\n"
    )
    let check = try runProcess(Repository.mergeExecutable, ["check", recipe])
    #expect(check.status == 1)
    #expect(
      check.stderr.contains(
        "note: the vocabularies differ: '\(models)/ft-tools' has 3 tokens the other lacks ('<tool_call>', '</tool_call>', '<|im_end|>')"
      ), "\(check.stderr)")
    #expect(
      check.stderr.contains("note: add 'tokenizer_source: union' to keep every model's tokens"))
    // A model whose config says 1025 rows but whose tokenizer has 1027 ids.
    let copy = dir.path + "/short"
    try FileManager.default.copyItem(atPath: models + "/ft-tools", toPath: copy)
    var config = try String(contentsOfFile: copy + "/config.json", encoding: .utf8)
    config = config.replacingOccurrences(of: "\"vocab_size\": 1027", with: "\"vocab_size\": 1025")
    try config.write(toFile: copy + "/config.json", atomically: true, encoding: .utf8)
    let union = dir.write(
      "u.yml",
      "merge_method: linear\nbase_model: \(models)/base\nmodels:\n  - model: \(models)/base\n    parameters: {weight: 0.5}\n  - model: \(copy)\n    parameters: {weight: 0.5}\ntokenizer_source: union\n"
    )
    let warned = try runProcess(Repository.mergeExecutable, ["check", union])
    #expect(
      warned.stderr.contains(
        "warning: the tokenizer of '\(copy)' has 2 tokens with ids at or past its vocab_size 1025 ('</tool_call>', '<|im_end|>')"
      ), "\(warned.stderr)")
  }
}

extension TokenizerParityTests {
  @Test(
    "transformers loads each output's tokenizer and encodes every added token as it encodes mergekit's output",
    .requiresPython("transformers"))
  func transformersEncodes() throws {
    let dir = TemporaryDirectory()
    // One Python process for every output (importing transformers takes seconds).
    let script = """
      import json, sys
      from transformers import AutoTokenizer
      args = sys.argv[1:]
      for ours, theirs in zip(args[::2], args[1::2]):
          added = [t["content"] for t in json.load(open(theirs + "/tokenizer.json"))["added_tokens"]]
          text = " hello ".join(added) + " world"
          a = AutoTokenizer.from_pretrained(ours).encode(text)
          b = AutoTokenizer.from_pretrained(theirs).encode(text)
          print(len(added), a == b)
      """
    var pairs: [String] = []
    for name in Self.recipes {
      let out = dir.path + "/" + name
      let run = try runProcess(
        Repository.mergeExecutable,
        ["run", Repository.parity + "/tok-recipes/\(name).yml", out, "--no-cache", "--quiet"])
      #expect(run.status == 0, "\(run.stderr)")
      pairs += [out, Repository.parity + "/expected/" + name]
    }
    let result = try runProcess(
      "/usr/bin/env", Python.command + ["-c", script] + pairs,
      environment: ["HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"])
    #expect(result.status == 0, "\(result.stderr)")
    let lines = result.stdout.split(separator: "\n").filter {
      $0.hasSuffix("True") || $0.hasSuffix("False")
    }
    #expect(lines.count == Self.recipes.count, "\(result.stdout)")
    for (name, line) in zip(Self.recipes, lines) {
      #expect(line.hasSuffix(" True"), "\(name): \(line)")
    }
  }
}

extension TokenizerParityTests {
  @Test(
    "a token whose id is past its model's embedding rows (vocab_size larger than the tensor) counts as one it lacks"
  )
  func rowsPastTensor() throws {
    let dir = TemporaryDirectory()
    let models = Repository.parity + "/models/tiny-chat"
    let copy = dir.path + "/big"
    try FileManager.default.copyItem(atPath: models + "/ft-tools", toPath: copy)
    var config = try String(contentsOfFile: copy + "/config.json", encoding: .utf8)
    config = config.replacingOccurrences(of: "\"vocab_size\": 1027", with: "\"vocab_size\": 1040")
    try config.write(toFile: copy + "/config.json", atomically: true, encoding: .utf8)
    var tokenizer = try JSONValue.parse(try FileSystem.read(copy + "/tokenizer.json"))
    var added = tokenizer["added_tokens"]?.arrayValue ?? []
    added.append(AddedToken(id: 1030, content: "<|ghost|>", special: true, normalized: false).json)
    tokenizer.set("added_tokens", .array(added))
    try FileSystem.write(copy + "/tokenizer.json", bytes: Array(tokenizer.formatted().utf8))
    let recipe = dir.write(
      "r.yml",
      "merge_method: linear\nbase_model: \(models)/base\nmodels:\n  - model: \(models)/base\n    parameters: {weight: 0.5}\n  - model: \(copy)\n    parameters: {weight: 0.5}\ntokenizer_source: union\ndtype: float32\n"
    )
    let run = try runProcess(
      Repository.mergeExecutable, ["run", recipe, dir.path + "/out", "--no-cache"])
    #expect(run.status == 0, "\(run.stderr)")
    let out = try ModelFolder(path: dir.path + "/out").openWeights()
    let embed = try out.tensor("model.embed_tokens.weight")
    // base's 1024 + <tool_call>, </tool_call>, <|im_end|>, <|ghost|>: the ghost's row is zeros
    // (no model has a row for it).
    #expect(embed.info.shape == [1028, 64])
    #expect(try embed.floats()[(1027 * 64)..<(1028 * 64)].allSatisfy { $0 == 0 })
  }
}

extension TokenizerParityTests {
  @Test("a tokens: entry whose source model is not merged is an error, not a silent zero row")
  func tokenSourceNotMerged() throws {
    let dir = TemporaryDirectory()
    let models = Repository.parity + "/models/tiny-chat"
    let recipe = dir.write(
      "r.yml",
      """
      merge_method: linear
      base_model: \(models)/base
      models:
        - model: \(models)/base
          parameters: {weight: 0.5}
        - model: \(models)/ft-chatml
          parameters: {weight: 0.5}
      tokenizer:
        source: union
        tokens:
          <|im_end|>:
            source: \(models)/ft-tools

      """)
    let check = try runProcess(Repository.mergeExecutable, ["check", recipe])
    #expect(check.status == 1)
    #expect(
      check.stderr.contains(
        "error: the row for '<|im_end|>' comes from '\(models)/ft-tools', which is not one of the models merged into"
      ), "\(check.stderr)")
  }
}
