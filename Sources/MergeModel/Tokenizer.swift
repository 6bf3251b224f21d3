/// A token a tokenizer adds to its model's vocabulary (tokenizer.json's `added_tokens`).
public struct AddedToken: Sendable, Hashable {
  /// The token's id.
  public var id: Int
  /// Its text.
  public var content: String
  /// Whether it is a special token (never split, skipped when decoding with special tokens
  /// skipped).
  public var special: Bool
  /// Whether the tokenizer's normalizer applies to it.
  public var normalized: Bool
  /// tokenizers' `single_word`, `lstrip` and `rstrip`.
  public var singleWord = false
  public var lstrip = false
  public var rstrip = false

  /// A token with the given flags.
  public init(id: Int, content: String, special: Bool, normalized: Bool) {
    self.id = id
    self.content = content
    self.special = special
    self.normalized = normalized
  }

  /// The entry as tokenizer.json writes it.
  public var json: JSONValue {
    .object([
      ("id", .integer(id)), ("content", .string(content)), ("single_word", .bool(singleWord)),
      ("lstrip", .bool(lstrip)), ("rstrip", .bool(rstrip)), ("normalized", .bool(normalized)),
      ("special", .bool(special)),
    ])
  }
}

/// A model folder's tokenizer as a merge reads it.
///
/// tokenizer.json (its vocabulary and added tokens), tokenizer_config.json, and the chat
/// template (`chat_template.jinja`, else the config's `chat_template`). Nothing is run; only
/// the JSON is read.
public struct TokenizerFiles: Sendable {
  /// The folder.
  public var folder: String
  /// tokenizer.json as read.
  public var json: JSONValue
  /// tokenizer_config.json, when there is one.
  public var config: JSONValue?
  /// The chat template, when the model has one (as written, not stripped).
  public var template: String?
  /// Every token the tokenizer knows, model vocabulary and added tokens: text → id.
  public var vocabulary: [String: Int]
  /// The added tokens, in id order.
  public var added: [AddedToken]

  /// The number of ids the tokenizer uses (its largest id + 1).
  public var size: Int { (vocabulary.values.max() ?? -1) + 1 }

  /// The files a tokenizer is read from.
  public static let fileNames = ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]

  /// Reads the tokenizer of the model folder at `folder`.
  public init(folder: String) throws(ModelError) {
    try self.init(folder: folder) { name throws(ModelError) -> [UInt8]? in
      let path = FileSystem.join(folder, name)
      guard FileSystem.kind(of: path) == .file else { return nil }
      return try FileSystem.read(path, limit: 1 << 30)
    }
  }

  /// Reads a tokenizer whose files `read` gives (nil for a file that is not there): a folder
  /// on disk, or a Hub snapshot's small files.
  public init(folder: String, read: (String) throws(ModelError) -> [UInt8]?) throws(ModelError) {
    self.folder = folder
    let path = FileSystem.join(folder, "tokenizer.json")
    func fail(_ reason: String) -> ModelError {
      .badTokenizer(path: path, reason: reason)
    }
    guard let bytes = try read("tokenizer.json") else {
      throw fail("there is no tokenizer.json (merge builds vocabularies from tokenizers' JSON)")
    }
    do {
      json = try JSONValue.parse(bytes)
    } catch {
      throw fail("it is not valid JSON (\(error))")
    }
    var vocabulary: [String: Int] = [:]
    switch json["model"]?["vocab"] {
    case .object(let entries)?:
      for (token, id) in entries {
        guard let id = id.intValue, id >= 0 else { throw fail("the id of '\(token)' is not an id") }
        vocabulary[token] = id
      }
    case .array(let entries)?:
      // Unigram: [token, score] pairs, the id being the position.
      for (id, entry) in entries.enumerated() {
        guard let token = entry.arrayValue?.first?.stringValue else {
          throw fail("entry \(id) of the Unigram vocabulary is not [token, score]")
        }
        vocabulary[token] = id
      }
    default:
      throw fail("model.vocab is neither a token → id object nor a Unigram list")
    }
    var added: [AddedToken] = []
    for entry in json["added_tokens"]?.arrayValue ?? [] {
      guard let id = entry["id"]?.intValue, id >= 0, let content = entry["content"]?.stringValue
      else { throw fail("an added token has no id or content") }
      var token = AddedToken(
        id: id, content: content, special: entry["special"]?.boolValue ?? false,
        normalized: entry["normalized"]?.boolValue ?? true)
      token.singleWord = entry["single_word"]?.boolValue ?? false
      token.lstrip = entry["lstrip"]?.boolValue ?? false
      token.rstrip = entry["rstrip"]?.boolValue ?? false
      added.append(token)
      vocabulary[content] = id
    }
    self.vocabulary = vocabulary
    self.added = added.sorted { $0.id < $1.id }
    if let bytes = try read("tokenizer_config.json") {
      do {
        config = try JSONValue.parse(bytes)
      } catch {
        throw .badTokenizer(
          path: FileSystem.join(folder, "tokenizer_config.json"),
          reason: "it is not valid JSON (\(error))")
      }
    }
    if let bytes = try read("chat_template.jinja") {
      template = String(decoding: bytes, as: UTF8.self)
    } else if let value = config?["chat_template"] {
      // A string, or (older files) a list of named templates of which "default" is used.
      template =
        value.stringValue
        ?? value.arrayValue?.first(where: { $0["name"]?.stringValue == "default" })?["template"]?
        .stringValue
    }
  }
}

/// The vocabulary of a merge's output, built as mergekit 0.1.5 builds it.
public struct OutputVocabulary: Sendable {
  /// The tokenizer the output's starts from (the base's for `base` and `union`).
  public var source: TokenizerFiles
  /// The tokens added to it, with their new ids (from `source.size` on), in that order.
  public var added: [AddedToken]
  /// Every token of the output: text → id.
  public var vocabulary: [String: Int]

  /// The number of ids.
  public var size: Int { source.size + added.count }

  /// `source`'s vocabulary as it is (`tokenizer_source: base`, or a model).
  public init(source: TokenizerFiles) {
    self.source = source
    self.added = []
    self.vocabulary = source.vocabulary
  }

  /// The union: `base`'s tokens with their ids, then, one model at a time (`models` in order,
  /// the base among them skipped), the tokens of its vocabulary that are not there yet — the
  /// ordinary vocabulary first, then its added tokens below its `vocab_size` (`limits`, by
  /// position), in id order with their flags — then `extra` (the recipe's `tokens:` keys, in
  /// order) that are still missing.
  ///
  /// mergekit iterates the models in an order that changes from run to run; this order is
  /// fixed: base first, then the models in recipe order.
  public static func union(
    base: TokenizerFiles, models: [TokenizerFiles], limits: [Int?], extra: [String] = []
  ) -> OutputVocabulary {
    var out = OutputVocabulary(source: base)
    func add(_ token: AddedToken) {
      guard out.vocabulary[token.content] == nil else { return }
      var t = token
      t.id = out.size
      out.added.append(t)
      out.vocabulary[t.content] = t.id
    }
    for (model, limit) in zip(models, limits) where model.folder != base.folder {
      let addedIDs = Set(model.added.map(\.id))
      let ordinary = model.vocabulary.filter { !addedIDs.contains($0.value) }
      for (content, _) in ordinary.sorted(by: { $0.value < $1.value }) {
        add(AddedToken(id: 0, content: content, special: false, normalized: true))
      }
      for token in model.added where limit.map({ token.id < $0 }) ?? true { add(token) }
    }
    return out.adding(extra)
  }

  /// The vocabulary with `extra` tokens that are not in it yet appended, in order (the
  /// recipe's `tokens:` keys; added as transformers adds tokens: not special, normalized).
  public func adding(_ extra: [String]) -> OutputVocabulary {
    var out = self
    for content in extra where out.vocabulary[content] == nil {
      let token = AddedToken(id: out.size, content: content, special: false, normalized: true)
      out.added.append(token)
      out.vocabulary[content] = token.id
    }
    return out
  }

  /// tokenizer.json of the output: the source's, with the added tokens appended.
  public var tokenizerJSON: JSONValue {
    var json = source.json
    let existing = json["added_tokens"]?.arrayValue ?? []
    json.set("added_tokens", .array(existing + added.map(\.json)))
    return json
  }

  /// tokenizer_config.json of the output: the source's, without its chat template (written to
  /// chat_template.jinja instead, as transformers 5 saves it).
  public var tokenizerConfig: JSONValue? {
    guard case .object(let members)? = source.config else { return nil }
    return .object(members.filter { $0.0 != "chat_template" })
  }
}

/// The chat template a recipe's `chat_template` gives the output, as mergekit 0.1.5 decides it.
public enum ChatTemplate {
  /// Why a setting gives no template.
  public enum Problem: Error, Sendable, Hashable, CustomStringConvertible {
    /// A built-in name merge does not carry yet.
    case builtInNotAvailable(String)
    /// Neither a known name nor a template (shorter than 20 characters, or without `{`).
    case invalid(String)

    public var description: String {
      switch self {
      case .builtInNotAvailable(let name):
        return "the built-in template '\(name)' is not available yet; write the template inline"
      case .invalid(let text):
        return
          "'\(text)' is neither a built-in template name nor a template (one holds '{' and is at least 20 characters long)"
      }
    }
  }

  /// mergekit 0.1.5's built-in template names.
  public static let builtInNames = ["alpaca", "chatml", "exaone", "llama3", "mistral"]

  /// The template `setting` gives: `auto` — the most common of `models`' templates, each
  /// stripped of surrounding white space, ties going to the one seen first (nil when no model
  /// has one); a built-in name; or the setting itself, used verbatim, when it is a template.
  public static func resolve(_ setting: String, models: [TokenizerFiles]) -> Result<
    String?, Problem
  > {
    if setting == "auto" {
      var counts: [String: Int] = [:]
      var order: [String] = []
      for template in models.compactMap(\.template) {
        let text = template.trimmingWhiteSpace()
        if counts[text] == nil { order.append(text) }
        counts[text, default: 0] += 1
      }
      let top = counts.values.max() ?? 0
      return .success(order.first { counts[$0] == top })
    }
    if setting.utf8.count < 256, !setting.contains("\n"), !setting.contains("{") {
      if builtInNames.contains(setting) { return .failure(.builtInNotAvailable(setting)) }
    }
    guard setting.count >= 20, setting.contains("{") else { return .failure(.invalid(setting)) }
    return .success(setting)
  }
}
