import MergeModel

/// The files of a merge's output besides its weights: what a later stage of a multi-stage
/// recipe reads of it, and what a run writes.
extension MergePlan {
  /// The donor's config.json with the output's layer count, per-layer lists and dtype.
  ///
  /// The layer count key (`num_hidden_layers` and friends, also inside `text_config`) is set to
  /// the output's layer count. Every list as long as the donor's layer count at the same level
  /// (such as `layer_types`) is rebuilt from the layers the output takes: entry `j` is the entry
  /// of the source layer of output layer `j`, from that layer's model when it has the list.
  /// `dtype` and `torch_dtype`, where present, name the output dtype (`torch_dtype` is added
  /// when neither is).
  public var outputConfig: JSONValue {
    let plan = self
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

  /// The output's tokenizer files: the built tokenizer (tokenizer.json, tokenizer_config.json
  /// and the template in chat_template.jinja, as transformers saves one; no generation
  /// config), or else the donor's side files as they are.
  public var outputTokenizerFiles: [(String, FileContent)] {
    if let vocabulary {
      var files: [(String, FileContent)] = [
        ("tokenizer.json", .bytes(Array(vocabulary.vocabulary.tokenizerJSON.formatted().utf8)))
      ]
      if let config = vocabulary.vocabulary.tokenizerConfig {
        files.append(("tokenizer_config.json", .bytes(Array(config.formatted().utf8))))
      }
      if let template = vocabulary.template {
        files.append(("chat_template.jinja", .bytes(Array(template.utf8))))
      }
      return files
    }
    let donor = models[donor].folder
    return donor.sideFiles().filter { $0 != "config.json" }.map { ($0, donor.content(of: $0)) }
  }

  /// The output's tensors as stored, in output order.
  public var outputSpecs: [TensorSpec] {
    tensors.map { TensorSpec(name: $0.name, dtype: $0.outputDType, shape: $0.shape) }
  }

  /// The model this plan produces as stage `name` of a multi-stage recipe: its config, its
  /// tokenizer files and its weights' header laid out as a run would write them.
  public func producedModel(stage name: String, shardSize: Int) -> ProducedModel {
    let layout = ShardLayout(tensors: outputSpecs, shardSize: shardSize)
    // One header in the shards' data order (a later stage's tensor order follows it).
    let ordered = layout.shards.flatMap(\.tensors)
    var specs: [TensorInfo] = []
    var offset = 0
    for t in ordered {
      specs.append(
        TensorInfo(
          name: t.name, dtype: t.dtype, shape: t.shape, dataRange: offset..<(offset + t.byteCount)))
      offset += t.byteCount
    }
    let header = SafetensorsHeader(laidOut: specs)
    return ProducedModel(
      stage: name, config: outputConfig,
      files: Dictionary(outputTokenizerFiles, uniquingKeysWith: { a, _ in a }), header: header)
  }
}
