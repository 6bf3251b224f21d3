import MergeCompiler
import MergeModel
import MergeRecipe

/// The output folder's config.json and model card.
public enum OutputFiles {
  /// The donor's config.json with the output's layer count, per-layer lists and dtype.
  ///
  /// The layer count key (`num_hidden_layers` and friends, also inside `text_config`) is set to
  /// the output's layer count. Every list as long as the donor's layer count at the same level
  /// (such as `layer_types`) is rebuilt from the layers the output takes: entry `j` is the entry
  /// of the source layer of output layer `j`, from that layer's model when it has the list.
  /// `dtype` and `torch_dtype`, where present, name the output dtype (`torch_dtype` is added
  /// when neither is).
  public static func config(for plan: MergePlan) -> JSONValue {
    var json = plan.models[plan.donor].folder.config.json
    let donorConfig = plan.models[plan.donor].folder.config
    if let (nested, key) = donorConfig.layerCountPath, let donorLayers = donorConfig.layerCount {
      func rebuild(_ object: JSONValue, path: String?) -> JSONValue {
        guard let members = object.objectValue else { return object }
        var result = object
        for (k, v) in members {
          if k == key {
            result.set(k, .integer(plan.outputLayerCount))
          } else if let list = v.arrayValue, list.count == donorLayers, donorLayers > 0 {
            var rebuilt: [JSONValue] = []
            for (m, l) in plan.layerSources {
              let source = plan.models[m].folder.config.json
              let sourceList = (path.map { source[$0]?[k] } ?? source[k])?.arrayValue
              if let sourceList, l < sourceList.count {
                rebuilt.append(sourceList[l])
              } else {
                rebuilt.append(list[min(l, list.count - 1)])
              }
            }
            result.set(k, .array(rebuilt))
          }
        }
        return result
      }
      if let nested, let inner = json[nested] {
        json.set(nested, rebuild(inner, path: nested))
      } else {
        json = rebuild(json, path: nil)
      }
    }
    let dtype = JSONValue.string(plan.configDType.torchName)
    var named = false
    for key in ["dtype", "torch_dtype"] where json[key] != nil {
      json.set(key, dtype)
      named = true
    }
    if !named { json.set("torch_dtype", dtype) }
    // A built tokenizer's vocabulary, padded as the vocabulary tensors are.
    if let vocabulary = plan.vocabulary, json["vocab_size"] != nil {
      json.set("vocab_size", .integer(vocabulary.paddedSize))
    }
    return json
  }

  /// A Hugging Face model card: YAML front matter (`base_model`, `tags: [merge]`), the method,
  /// the models, the seed and the recipe.
  ///
  /// As mergekit's card, `base_model` lists the Hugging Face repositories merged (none is
  /// `[]`); a local folder is named by its last component, never by a path of the machine
  /// that ran the merge.
  public static func modelCard(
    plan: MergePlan, recipeText: String, seed: UInt64, layout: ShardLayout
  ) -> String {
    let repositories = plan.models.compactMap(\.hubRepository?.value)
    var card = "---\nbase_model:" + (repositories.isEmpty ? " []\n" : "\n")
    for r in repositories { card += "- \(yamlQuoted(r))\n" }
    card += "library_name: transformers\ntags:\n- merge\n- mergekit\n---\n\n"
    card += "# Merged model\n\n"
    card +=
      "This model is a merge of pre-trained language models, made with `merge` from a mergekit recipe.\n\n"
    card += "## Merge details\n\n"
    card += "- Method: \(plan.method.spec.prettyName) (`\(plan.method.spec.name)`)\n"
    if let base = plan.tensors.first?.baseIndex.map({ plan.tensors[0].inputs[$0].model }) {
      card += "- Base model: \(cardName(plan.models[base]))\n"
    }
    card += "- Models:\n"
    for m in plan.models { card += "  - \(cardName(m))\n" }
    card += "- Seed: \(seed)\n"
    card += "- Output: \(plan.tensors.count) tensors, \(plan.outputLayerCount) layers, "
    card +=
      "\(layout.shards.count) shard\(layout.shards.count == 1 ? "" : "s"), \(plan.configDType.torchName)\n\n"
    card += "## Recipe\n\n```yaml\n\(recipeText)\(recipeText.hasSuffix("\n") ? "" : "\n")```\n"
    return card
  }

  /// A model as the card shows it: a repository as a link, a local folder by its name.
  static func cardName(_ model: ResolvedModel) -> String {
    if let repository = model.hubRepository {
      let revision = model.reference.model.revision.map { "@" + $0.value } ?? ""
      return "[\(repository)\(revision)](https://huggingface.co/\(repository))"
    }
    let written = model.reference.model.path.value
    let name = written.split(separator: "/").last.map(String.init) ?? written
    return "`\(name)`"
  }

  static func yamlQuoted(_ s: String) -> String {
    let plain =
      s.allSatisfy { $0.isLetter || $0.isNumber || "-_./@+".contains($0) } && !s.hasPrefix("-")
    return plain ? s : "'" + s.replacingOccurrences(of: "'", with: "''") + "'"
  }
}

extension String {
  fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
    split(separator: Character(target), omittingEmptySubsequences: false).joined(
      separator: replacement)
  }
}
