/// A method's computation over whole tensors, for what blocks cannot do: norms and dot
/// products that rescale every element, rows, quantiles, iterations.
///
/// Each method that needs one declares its kernel in its own file, beside its spec and
/// lowering: the arithmetic, what it costs and how much memory it takes beyond its inputs.
/// The executor decodes the kernel's inputs whole (in f32, the base first when the method has
/// one), calls it once on one thread and stores the result, so the result cannot depend on the
/// thread count.
public protocol WholeTensorKernel: Sendable, Hashable, CustomStringConvertible {
  /// Relative cost per input element, the nearswap kernel (one pass) being 1: how many passes
  /// over its inputs the kernel makes. `merge plan` scales its calibrated constant by it.
  var costWeight: Double { get }

  /// Bytes per element the kernel allocates beyond its decoded inputs and its result.
  func temporaryBytes(inputs: Int) -> Int

  /// The merged tensor from whole f32 `inputs` of `shape` (row-major).
  func callAsFunction(_ inputs: [[Float]], shape: [Int]) -> [Float]

  /// A stable description of the kernel and its parameters, for cache keys.
  var identity: String { get }
}

extension WholeTensorKernel {
  /// The type's full name and every field (`MergeCompiler.NearSwap.Kernel(t: 0.5)`), read by
  /// reflection rather than from `description`: stable as long as the kernel's fields are.
  public var identity: String {
    let fields = Mirror(reflecting: self).children.map { "\($0.label ?? "_"): \($0.value)" }
    return String(reflecting: type(of: self)) + "(" + fields.joined(separator: ", ") + ")"
  }
}

/// A whole-tensor kernel as a value an ``Op`` can hold: equal when the kernels are the same
/// type with the same parameters.
public struct AnyWholeTensorKernel: Sendable, Hashable, CustomStringConvertible {
  /// The kernel.
  public let base: any WholeTensorKernel

  /// Wraps `kernel`.
  public init(_ kernel: any WholeTensorKernel) {
    base = kernel
  }

  public static func == (a: AnyWholeTensorKernel, b: AnyWholeTensorKernel) -> Bool {
    AnyHashable(a.base) == AnyHashable(b.base)
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(AnyHashable(base))
  }

  public var description: String { base.description }
}

extension Op {
  /// The whole-tensor operation that runs `kernel`.
  public static func kernel(_ kernel: some WholeTensorKernel) -> Op {
    .wholeTensor(AnyWholeTensorKernel(kernel))
  }
}
