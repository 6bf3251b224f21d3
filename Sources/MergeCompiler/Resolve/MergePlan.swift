import MergeModel
import MergeRecipe

/// A model the merge reads.
public struct ResolvedModel: Sendable {
  /// The reference as written in the recipe.
  public var reference: ModelReference
  /// The folder.
  public var folder: ModelFolder
  /// Its weights (headers validated).
  public var weights: ModelWeights
  /// The Hugging Face repository it was read from (nil for a local folder).
  public var hubRepository: HubRepositoryID? = nil
  /// The LoRA adapter applied to it (`model+adapter`), if any.
  public var adapter: LoraAdapter? = nil
  /// The task vector added to it (`model+taskvectorfolder`), if any.
  public var taskVector: TaskVectorSource? = nil

  /// The folder's path.
  public var path: String { folder.path }
  /// The stage of a multi-stage recipe whose output this model is, if it is one.
  public var stage: String? { folder.produced?.stage }
}

/// One input of an output tensor: which model, which of its tensors.
public struct TensorInput: Sendable, Hashable {
  /// Index into ``MergePlan/models``.
  public var model: Int
  /// The tensor's name in that model.
  public var tensor: String
  /// Its header entry (the adapter's, for a tensor the adapter replaces).
  public var info: TensorInfo
  /// What the model's LoRA adapter does to the tensor, if anything.
  public var adapter: InputAdapter? = nil
  /// For a vocabulary tensor of a merge with a tokenizer section: its rows in the output
  /// vocabulary's order.
  public var alignment: RowAlignment? = nil
}

/// What a LoRA adapter does to one input tensor.
public enum InputAdapter: Sendable, Hashable {
  /// `W + scale · B·A`, computed as the tensor is read.
  case delta(LoraDelta)
  /// The adapter stores the whole tensor (`modules_to_save`): this adapter tensor is read instead.
  case replaced(by: String)
  /// The model's task vector changes the tensor: `W + τ`, τ dense or sparse.
  case taskVector(sparse: Bool)
}

/// Everything needed to compute one output tensor: its inputs in merge order, the parameters
/// evaluated for it, and where it came from in the recipe.
public struct TensorPlan: Sendable {
  /// The output tensor's name.
  public var name: String
  /// Its shape.
  public var shape: [Int]
  /// Where it sits.
  public var role: TensorRole
  /// The inputs, in the order mergekit merges them (recipe order, base last when added).
  public var inputs: [TensorInput]
  /// Which input is the base model, if the method uses one.
  public var baseIndex: Int?
  /// Shared parameters, evaluated for this tensor, by name.
  public var shared: [String: BoundParameter]
  /// Per-input parameters, evaluated for this tensor, by name (empty for inputs they do not
  /// apply to).
  public var perInput: [[String: BoundParameter]]
  /// The gradient position of the tensor's layer within its slice.
  public var t: Double
  /// The dtype inputs are rounded to before computing (the recipe's `dtype`), if any.
  public var inputDType: DType?
  /// The dtype an adapted input is rounded to once its adapter is applied, before
  /// ``inputDType`` (`--lora-merge-dtype`: mergekit's model with the adapter merged, as stored).
  public var adapterDType: DType? = nil
  /// The dtype stored.
  public var outputDType: DType
  /// Where in the recipe the tensor's slice (or model list) is.
  public var origin: SourceRange?

  /// The number of elements.
  public var count: Int { shape.reduce(1, *) }
}

/// A resolved merge: the models, and a plan for every output tensor in output order.
public struct MergePlan: Sendable {
  /// The method.
  public var method: any MergeMethod.Type
  /// The models read, in recipe order.
  public var models: [ResolvedModel]
  /// The output tensors, in the order they are written.
  public var tensors: [TensorPlan]
  /// The number of layers of the output.
  public var outputLayerCount: Int
  /// For each output layer, the model and layer it was taken from (first source of its slice).
  public var layerSources: [(model: Int, layer: Int)]
  /// The model whose config.json and tokenizer the output takes.
  public var donor: Int
  /// The recipe's `dtype`, if any.
  public var inputDType: DType?
  /// The recipe's `out_dtype`, if any.
  public var outDType: DType?
  /// The output's tokenizer, when the recipe has a tokenizer section or a chat template.
  public var vocabulary: VocabularyPlan? = nil

  /// The dtype the output's config.json names (out_dtype, else dtype, else the stored dtype
  /// of most tensors).
  public var configDType: DType {
    if let outDType { return outDType }
    if let inputDType { return inputDType }
    var counts: [DType: Int] = [:]
    for t in tensors { counts[t.outputDType, default: 0] += t.count }
    return counts.max { $0.value < $1.value }?.key ?? .float32
  }
}
