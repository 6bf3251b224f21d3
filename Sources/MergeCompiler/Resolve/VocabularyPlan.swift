import MergeModel
import MergeRecipe

/// How one input's vocabulary rows (embeddings, output head) are laid out in the output
/// vocabulary: for each output token, where its row comes from.
public struct RowAlignment: Sendable, Hashable {
  /// Where one row comes from.
  public enum Row: Sendable, Hashable {
    /// Row `row` of this input.
    case own(Int)
    /// Row `row` of input `input` (another model's tensor).
    case other(input: Int, row: Int)
    /// The mean of these rows (input, row), in that order.
    case mean([Source])
    /// Zeros.
    case zero
  }

  /// A row of an input.
  public struct Source: Sendable, Hashable {
    /// The input.
    public var input: Int
    /// The row.
    public var row: Int
  }

  /// One entry per output token, by id.
  public var rows: [Row]
  /// The rows of the output including padding (`pad_to_multiple_of`); the padding rows are
  /// the mean of the real rows.
  public var paddedCount: Int
}

/// The tokenizer of a merge's output and what it asks of the vocabulary tensors, as mergekit
/// 0.1.5 builds them (`tokenizer_source`, `tokenizer:`, `chat_template`).
public struct VocabularyPlan: Sendable {
  /// The output vocabulary and tokenizer files.
  public var vocabulary: OutputVocabulary
  /// The output's rows: the vocabulary, padded to `pad_to_multiple_of`.
  public var paddedSize: Int
  /// The chat template written to chat_template.jinja, if any.
  public var template: String?
  /// Each model's tokens (text → row), only those below its config's `vocab_size`.
  var rowsOfModel: [Int: [String: Int]]
  /// The recipe's per-token choices, by token text: the model index it names (nil for zero),
  /// the row there when given by id or text (`kind: model_token`), and `force`.
  var choices: [String: Choice]
  /// The base model's index, if any.
  var base: Int?

  /// One `tokens:` entry, resolved.
  struct Choice {
    var model: Int?
    var modelRow: Int?
    var force: Bool
  }

  /// The alignment of each of `models` (the inputs of one vocabulary tensor, by model index),
  /// by mergekit's rules: a model's own row when it has the token (unless `force`); else the
  /// `tokens:` entry; else the only model that has it; else the base's row; else the mean of
  /// the models that have it; a token no model has is zeros.
  ///
  /// `rows` are the row counts of the inputs' tensors: a token whose id is past them counts as
  /// one the model lacks (a config's `vocab_size` larger than its tensor).
  func alignments(models: [Int], rows: [Int]) -> [RowAlignment] {
    let tokens = vocabulary.vocabulary.sorted { $0.value < $1.value }
    func rowOf(_ token: String, _ input: Int) -> Int? {
      guard let r = rowsOfModel[models[input]]?[token], r < rows[input] else { return nil }
      return r
    }
    var defaults: [Int: RowAlignment.Row] = [:]
    for (token, id) in tokens {
      let present = models.indices.filter { rowOf(token, $0) != nil }
      let choice = choices[token]
      guard choice?.force == true || present.count < models.count else { continue }
      defaults[id] = defaultRow(
        token, choice: choice, present: present, models: models, rows: rows, rowOf: rowOf)
    }
    return models.indices.map { i in
      var rows: [RowAlignment.Row] = []
      rows.reserveCapacity(tokens.count)
      for (token, id) in tokens {
        if let own = rowOf(token, i), choices[token]?.force != true {
          rows.append(.own(own))
        } else {
          rows.append(Self.relative(defaults[id] ?? .zero, to: i))
        }
      }
      return RowAlignment(rows: rows, paddedCount: paddedSize)
    }
  }

  /// The row a model without `token` (or forced) takes, in input positions.
  private func defaultRow(
    _ token: String, choice: Choice?, present: [Int], models: [Int], rows: [Int],
    rowOf: (String, Int) -> Int?
  ) -> RowAlignment.Row {
    func row(of input: Int) -> RowAlignment.Row {
      guard let r = rowOf(token, input) else { return .zero }
      return .other(input: input, row: r)
    }
    if let choice {
      guard let model = choice.model, let input = models.firstIndex(of: model) else { return .zero }
      // A row given by id is checked against the tensor when the plan is resolved.
      if let r = choice.modelRow { return r < rows[input] ? .other(input: input, row: r) : .zero }
      return row(of: input)
    }
    if present.count == 1 { return row(of: present[0]) }
    if present.isEmpty { return .zero }
    if let base, let input = models.firstIndex(of: base), present.contains(input) {
      return row(of: input)
    }
    return .mean(present.compactMap { i in rowOf(token, i).map { .init(input: i, row: $0) } })
  }

  /// `.other` rows of input `i` itself are its own rows.
  private static func relative(_ row: RowAlignment.Row, to i: Int) -> RowAlignment.Row {
    if case .other(let input, let r) = row, input == i { return .own(r) }
    return row
  }

  /// Whether `name` is a vocabulary tensor (rows indexed by token id).
  public static func isVocabularyTensor(_ name: String) -> Bool {
    TensorNaming.isOutputHead(name) || name.hasSuffix("embed_tokens.weight")
      || name == "transformer.wte.weight" || name == "gpt_neox.embed_in.weight"
  }
}
