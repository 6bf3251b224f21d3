import MergeRecipe

/// A merge method: one type, declared in one file, that says everything about it.
///
/// - ``spec``: the interface the checker enforces — parameters with their types, defaults,
///   ranges and advice, arity, base-model policy.
/// - ``validate(_:)``: the rules the spec cannot state, checked per output tensor once its
///   parameters are evaluated, before any tensor data is read.
/// - ``lower(_:loads:seed:into:)``: the graph of operations that computes one output tensor; a
///   method that needs whole tensors lowers to its own ``WholeTensorKernel``.
///
/// ``MethodRegistry`` lists the types; nothing else names a method.
public protocol MergeMethod: Sendable {
  /// The method's interface.
  static var spec: MethodSpec { get }

  /// Problems with `tensor`'s evaluated parameters that the spec's ranges cannot express
  /// (DELLA's density ± epsilon).
  static func validate(_ tensor: TensorPlan) -> [Diagnostic]

  /// The node computing `tensor`'s merged values (the store is added after it).
  ///
  /// - Parameters:
  ///   - loads: one load node per input of `tensor`, in its order.
  ///   - seed: the run's seed, which keys the random methods' streams.
  static func lower(
    _ tensor: TensorPlan, loads: [NodeID], seed: UInt64, into builder: inout GraphBuilder
  ) throws(LoweringError) -> NodeID
}

extension MergeMethod {
  /// No rules beyond the spec.
  public static func validate(_ tensor: TensorPlan) -> [Diagnostic] { [] }
}

/// Why a tensor could not be lowered.
public struct LoweringError: Error, Sendable, CustomStringConvertible {
  /// The output tensor.
  public var tensor: String
  /// What is wrong.
  public var reason: String
  /// Where in the recipe the tensor's inputs were chosen (its slice or model list).
  public var origin: SourceRange?

  public var description: String { "tensor '\(tensor)': \(reason)" }

  /// Creates an error.
  public init(tensor: String, reason: String, origin: SourceRange?) {
    self.tensor = tensor
    self.reason = reason
    self.origin = origin
  }
}

// MARK: - Parameters of a tensor

extension TensorPlan {
  /// The value of parameter `p` for this tensor, for input `input` when `p` is per model.
  ///
  /// The resolver evaluates every parameter of the method for every tensor (defaults come
  /// from the spec, there), so a missing value is an internal error, reported, not a crash.
  public func value(_ p: ParameterSpec, input: Int? = nil) throws(LoweringError) -> ParameterValue {
    let bound = input.map { perInput[$0][p.name] } ?? shared[p.name]
    guard let bound else {
      throw LoweringError(
        tensor: name, reason: "internal error: parameter '\(p.name)' was not evaluated",
        origin: origin)
    }
    return bound.value
  }

  /// Parameter `p` as a number (`none` is an internal error).
  public func number(_ p: ParameterSpec, input: Int? = nil) throws(LoweringError) -> Double {
    guard let n = try value(p, input: input).number else {
      throw LoweringError(
        tensor: name, reason: "internal error: parameter '\(p.name)' has no value",
        origin: origin)
    }
    return n
  }

  /// Parameter `p` as a Boolean.
  public func flag(_ p: ParameterSpec, input: Int? = nil) throws(LoweringError) -> Bool {
    try value(p, input: input).bool
  }

  /// The inputs other than the base, in merge order.
  public var nonBaseInputs: [Int] { inputs.indices.filter { $0 != baseIndex } }

  /// The base input; `method` needs one.
  public func requireBase(for method: MethodSpec) throws(LoweringError) -> Int {
    guard let baseIndex else {
      throw LoweringError(
        tensor: name, reason: "\(method.name) needs the base model's tensor", origin: origin)
    }
    return baseIndex
  }

  /// `loads` ordered base first (when there is one), then the others in merge order: the
  /// operand order of whole-tensor kernels.
  public func baseFirst(_ loads: [NodeID]) -> [NodeID] {
    (baseIndex.map { [loads[$0]] } ?? []) + nonBaseInputs.map { loads[$0] }
  }
}

/// A method computed by one whole-tensor kernel over its inputs, the base first.
///
/// Declaring ``kernel(for:)`` is all its lowering: the base is required when the spec requires
/// one, and the kernel's operands are the loads, base first.
protocol WholeTensorMethod: MergeMethod {
  /// The kernel that computes `tensor` (with its parameters evaluated for it).
  associatedtype Kernel: WholeTensorKernel
  static func kernel(for tensor: TensorPlan) throws(LoweringError) -> Kernel
}

extension WholeTensorMethod {
  public static func lower(
    _ tensor: TensorPlan, loads: [NodeID], seed: UInt64, into builder: inout GraphBuilder
  ) throws(LoweringError) -> NodeID {
    if spec.base == .required { _ = try tensor.requireBase(for: spec) }
    return builder.node(.kernel(try kernel(for: tensor), method: spec), tensor.baseFirst(loads))
  }
}
