import MergeCompiler
import MergeModel
import MergeRecipe

/// The output folder's model card (its config.json is ``MergePlan/outputConfig``).
public enum OutputFiles {
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
