/// A method's computation over whole tensors, for what blocks cannot do: norms and dot
/// products that rescale every element, rows, quantiles, iterations.
///
/// Each method that needs one declares its kernel in its own file, beside its spec and
/// lowering: the arithmetic, what it costs and how much memory it takes beyond its inputs.
/// The executor decodes the kernel's inputs whole (in f32, the base first when the method has
/// one), calls it once on one thread and stores the result, so the result cannot depend on the
/// thread count.
public protocol WholeTensorKernel: Sendable, Hashable {
  /// What the kernel costs per element, for `merge plan`.
  var cost: KernelCost { get }

  /// The merged tensor from whole f32 `inputs` of `shape` (row-major).
  func callAsFunction(_ inputs: [[Float]], shape: [Int]) -> [Float]

  /// A stable description of the kernel and its parameters, for cache keys.
  var identity: String { get }
}

/// What a whole-tensor kernel costs per element.
public struct KernelCost: Sendable, Hashable {
  /// Relative time per input element: how many passes over its inputs the kernel makes.
  ///
  /// The nearswap kernel (one pass) is 1; `merge plan` scales its calibrated constant by it.
  public var weight: Double
  /// Bytes the kernel allocates beyond its decoded inputs and its result, per element and
  /// input.
  public var bytesPerInput: Int
  /// Bytes the kernel allocates beyond its decoded inputs and its result, per element.
  public var bytes: Int

  /// A cost of `weight` passes, allocating `bytesPerInput · inputs + bytes` per element.
  public init(weight: Double, bytesPerInput: Int = 0, bytes: Int = 0) {
    self.weight = weight
    self.bytesPerInput = bytesPerInput
    self.bytes = bytes
  }

  /// Bytes per element allocated beyond the decoded inputs and the result.
  public func temporaryBytes(inputs: Int) -> Int { bytesPerInput * inputs + bytes }
}

extension WholeTensorKernel {
  /// The type's full name and every field (`MergeCompiler.NearSwap.Kernel(t: 0.5)`): stable as
  /// long as the kernel's fields are.
  public var identity: String {
    let fields = Mirror(reflecting: self).children.map { "\($0.label ?? "_"): \($0.value)" }
    return String(reflecting: type(of: self)) + "(" + fields.joined(separator: ", ") + ")"
  }

  /// The kernel's parameters as printed graphs show them: `t=0.5 row_wise=false`, absent
  /// optionals left out and nested values flattened.
  var parameterDescription: String {
    func fields(_ value: Any) -> [String] {
      Mirror(reflecting: value).children.flatMap { field($0.label ?? "_", $0.value) }
    }
    func field(_ label: String, _ value: Any) -> [String] {
      let mirror = Mirror(reflecting: value)
      switch mirror.displayStyle {
      case .optional: return mirror.children.first.map { field(label, $0.value) } ?? []
      case .struct: return fields(value)
      default:
        let name = label.reduce(into: "") { out, c in
          if c.isUppercase { out += "_" + c.lowercased() } else { out.append(c) }
        }
        return [name + "=\(value)"]
      }
    }
    return fields(self).joined(separator: " ")
  }
}

/// A whole-tensor kernel as a value an ``Op`` can hold: equal when the kernels are the same
/// type with the same parameters.
public struct AnyWholeTensorKernel: Sendable, Hashable, CustomStringConvertible {
  /// The kernel.
  public let base: any WholeTensorKernel
  /// The name of the method it computes.
  public let method: String

  /// Wraps `kernel` of method `method`.
  public init(_ kernel: any WholeTensorKernel, method: String) {
    base = kernel
    self.method = method
  }

  public static func == (a: AnyWholeTensorKernel, b: AnyWholeTensorKernel) -> Bool {
    AnyHashable(a.base) == AnyHashable(b.base)
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(AnyHashable(base))
  }

  /// The method's name and the kernel's parameters: `nearswap t=0.5`.
  public var description: String {
    let parameters = base.parameterDescription
    return parameters.isEmpty ? method : method + " " + parameters
  }
}

extension Op {
  /// The whole-tensor operation that runs `kernel` for method `method`.
  public static func kernel(_ kernel: some WholeTensorKernel, method: MethodSpec) -> Op {
    .wholeTensor(AnyWholeTensorKernel(kernel, method: method.name))
  }
}
